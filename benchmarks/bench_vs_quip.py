#!/usr/bin/env python
"""Compare gapy with QUIP's ``gap_fit`` on the mlearn Si or Mo data.

Both codes are fitted on the same training structures with the mlearn published GAP
hyperparameters (SOAP l_max = n_max = 8, atom_sigma 0.5, zeta 4, delta 1, CUR sparse
points, sigmas 0.01 eV/atom and 0.05 eV/A) and evaluated on the mlearn test set. The
script prints one markdown table: test RMSE of energy (meV/atom), forces (eV/A) and
stress (GPa), overall and per ``config_type``; fit wall time and peak memory; prediction
time per atom for energy + forces + stress; and the ratio gapy/QUIP of each.

Every fit and every prediction runs in its own subprocess: the fit's wall time is that
process's (reading the data and writing the model included, for both codes) and its peak
memory is the process's peak resident set size (``os.wait4``). ``gap_fit`` runs on one
core (``OMP_NUM_THREADS=1``), gapy with ``--n-jobs`` joblib threads and ``--blas-threads``
OpenBLAS threads (default 1: with both at 2 on two cores gapy is several times slower,
see ``benchmarks/README.md``). Prediction time is the minimum over ``--repeats`` passes over the test set after
a warm-up; gapy uses ``GAPRegressor.predict_all`` (no variances), QUIP the quippy
``Potential`` ASE calculator (this quippy-ase wheel has no OpenMP: one thread).

Usage (from the project root)::

    python benchmarks/bench_vs_quip.py --element Si --n-train 30 --n-sparse 200   # ~2 min
    python benchmarks/bench_vs_quip.py --element Si                              # full
    python benchmarks/bench_vs_quip.py --element Si --recommended --seed 1       # gapy's defaults vs gap_fit
    python benchmarks/bench_vs_quip.py --element Si --fit-stress --sigma-virial 0.01 0.05 0.1
    python benchmarks/bench_vs_quip.py --n-train 30 --n-sparse 200 --n-jobs 2 1 --blas-threads 1 0
"""

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
DEFAULT_DATA_DIR = (PROJECT_ROOT / ".." / "shared" / "data" / "mlearn").resolve()

EV_PER_A3_TO_GPA = 160.21766
#: mlearn's published gap_fit settings per element.
PUBLISHED = {
    "Si": {"cutoff": 5.4, "n_sparse": 1000, "e0": -0.79},
    "Mo": {"cutoff": 5.2, "n_sparse": 2000, "e0": -4.04},
}
N_MAX = L_MAX = 8
ATOM_SIGMA = 0.5
CUTOFF_WIDTH = 0.5
ZETA = 4
DELTA = 1.0
SIGMA_ENERGY = 0.01  # eV/atom
SIGMA_FORCE = 0.05  # eV/A
QUIP_SIGMA_VIRIAL = 0.01  # eV/atom, gap_fit default_sigma when virials are in the data
SPARSE_JITTER = 1e-8
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --------------------------------------------------------------------------- #
# Workers: run in a fresh subprocess, configured by a JSON file.              #
# --------------------------------------------------------------------------- #


def _read(path, n=None):
    from ase.io import read

    frames = read(path, ":")
    return frames if n is None else frames[:n]


def worker_fit_gapy(cfg):
    """Fit a GAPRegressor on the first ``n_train`` structures and save it."""
    from gapy import SOAP, GAPRegressor, Term, TwoBody

    frames = _read(cfg["train"], cfg["n_train"])
    if cfg.get("recommended"):
        return _fit_recommended(frames, cfg)
    element = cfg["element"]
    two_body = None
    if cfg.get("two_body"):
        delta_2b, theta_2b, n_sparse_2b = cfg["two_body"]
        two_body = Term(TwoBody([element], r_cut=cfg["cutoff"], cutoff_width=CUTOFF_WIDTH), delta=delta_2b,
                        theta=theta_2b, n_sparse=int(n_sparse_2b))
    model = GAPRegressor(
        SOAP(species=[element], r_cut=cfg["cutoff"], n_max=N_MAX, l_max=L_MAX,
             atom_sigma=ATOM_SIGMA, cutoff_width=CUTOFF_WIDTH),
        zeta=ZETA, delta=DELTA, n_sparse=cfg["n_sparse"], sparse_method="cur",
        sigma_energy=SIGMA_ENERGY, sigma_force=SIGMA_FORCE, sigma_virial=cfg["sigma_virial"],
        e0={element: cfg["e0"]}, sparse_jitter=SPARSE_JITTER, n_jobs=cfg["n_jobs"],
        random_state=cfg["seed"], two_body=two_body,
    )
    start = time.perf_counter()
    model.fit(frames)
    fit_seconds = time.perf_counter() - start
    model.save(cfg["model"])
    return {"fit_seconds": fit_seconds}


def _fit_recommended(frames, cfg):
    """What ``gapy fit train.xyz`` does: :func:`gapy.recommend` then the evidence search."""
    from gapy.recommend import recommend

    recommendation = recommend(frames, random_state=cfg["seed"])
    model = recommendation.model.set_params(n_jobs=cfg["n_jobs"])
    start = time.perf_counter()
    model.maximize_evidence(frames, **recommendation.evidence_options)
    fit_seconds = time.perf_counter() - start
    model.save(cfg["model"])
    return {"fit_seconds": fit_seconds}


def _predict_gapy(cfg):
    from gapy import load

    model = load(cfg["model"])
    model.n_jobs = cfg["n_jobs"]

    def predict(frames):
        return [(r["energy"], r["forces"], r["stress"]) for r in model.predict_all(frames)]

    return predict


def _predict_quip(cfg):
    from ase.calculators.calculator import all_changes
    from quippy.potential import Potential

    potential = Potential(param_filename=cfg["model"])

    def predict(frames):
        out = []
        for atoms in frames:
            potential.reset()  # never reuse cached results
            potential.calculate(atoms, properties=["energy", "forces", "stress"], system_changes=all_changes)
            r = potential.results
            out.append((r["energy"], r["forces"].copy(), r["stress"].copy()))
        return out

    return predict


def worker_predict(cfg):
    """Energy, forces and stress of every test structure; best of ``repeats`` timings."""
    frames = _read(cfg["test"])
    predict = _predict_gapy(cfg) if cfg["code"] == "gapy" else _predict_quip(cfg)
    predict(frames[:2])  # warm-up: JIT, caches, lazy initialisation
    times = []
    for _ in range(cfg["repeats"]):
        start = time.perf_counter()
        results = predict(frames)
        times.append(time.perf_counter() - start)
    np.savez(
        cfg["predictions"],
        energy=np.array([r[0] for r in results]),
        forces=np.concatenate([r[1] for r in results]),
        stress=np.array([r[2] for r in results]),
    )
    return {"predict_seconds": times, "n_atoms": sum(len(a) for a in frames)}


WORKERS = {"fit-gapy": worker_fit_gapy, "predict": worker_predict}


def worker_main(kind, config_path):
    cfg = json.loads(Path(config_path).read_text())
    result = WORKERS[kind](cfg)
    Path(cfg["result"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- #
# Driver                                                                      #
# --------------------------------------------------------------------------- #


def thread_env(n_threads):
    """Environment with BLAS/OpenMP pools limited to ``n_threads`` (None: library default, all cores)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if n_threads is not None:
        env.update({name: str(n_threads) for name in THREAD_VARIABLES})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def run_measured(cmd, env, log_path, cwd=None):
    """Run ``cmd``; return its wall and CPU time (s), peak RSS (bytes) and the load at its start."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child alone
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "".join(Path(log_path).read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(map(str, cmd))[:200]} failed ({proc.returncode}); {log_path}:\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "peak_rss": usage.ru_maxrss * 1024, "load": load}


def run_worker(kind, cfg, work, tag, n_threads):
    """Run one worker in a fresh Python process; its measurements plus what it returned."""
    cfg = dict(cfg, result=str(work / f"{tag}.result.json"))
    config_path = work / f"{tag}.config.json"
    config_path.write_text(json.dumps(cfg))
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", kind, str(config_path)]
    measured = run_measured(cmd, thread_env(n_threads), work / f"{tag}.log")
    return {**measured, **json.loads(Path(cfg["result"]).read_text())}


def gap_fit_executable():
    """The compiled gap_fit (not the Python wrapper script, so wait4 sees one process)."""
    import importlib.util

    spec = importlib.util.find_spec("quippy")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "gap_fit"
        if binary.is_file():
            return str(binary)
    found = shutil.which("gap_fit")
    if found is None:
        raise RuntimeError("gap_fit not found: install quippy-ase or use --skip-quip")
    return found


def write_gap_fit_xyz(frames, path, with_virial):
    """Training file for gap_fit: energy, forces and (optionally) the virial (eV), under dft_* keys."""
    from ase import Atoms
    from ase.io import write

    out = []
    for atoms in frames:
        copy = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        copy.info["config_type"] = atoms.info.get("config_type", "default")
        copy.info["dft_energy"] = atoms.get_potential_energy()
        copy.arrays["dft_forces"] = atoms.get_forces()
        if with_virial:
            # 9 numbers (a 3x3 array would be written as "_JSON [[...]]", which gap_fit skips)
            copy.info["dft_virial"] = (-atoms.get_stress(voigt=False) * atoms.get_volume()).ravel()
        out.append(copy)
    write(path, out, format="extxyz")


def gap_fit_command(cfg, train_file, model_file):
    """gap_fit arguments as in mlearn's published command, with explicit label names."""
    soap = (
        f"soap l_max={L_MAX} n_max={N_MAX} atom_sigma={ATOM_SIGMA} zeta={ZETA} "
        f"cutoff={cfg['cutoff']} cutoff_transition_width={CUTOFF_WIDTH} delta={DELTA} f0=0.0 "
        f"covariance_type=dot_product sparse_method=cur_points n_sparse={cfg['n_sparse']}"
    )
    return [
        gap_fit_executable(),
        f"at_file={train_file}",
        f"gap={{{soap}}}",
        f"default_sigma={{{SIGMA_ENERGY} {SIGMA_FORCE} {QUIP_SIGMA_VIRIAL} 1.0}}",
        f"sparse_jitter={SPARSE_JITTER}",
        f"e0={{{cfg['element']}:{cfg['e0']}}}",
        f"gp_file={model_file}",
        "energy_parameter_name=dft_energy",
        "force_parameter_name=dft_forces",
        "virial_parameter_name=dft_virial",
        f"rnd_seed={cfg['seed']}",
    ]


def fit_and_predict_quip(cfg, work):
    """gap_fit on one core, then predictions with the quippy calculator."""
    train_frames = _read(cfg["train"], cfg["n_train"])
    write_gap_fit_xyz(train_frames, work / "quip_train.xyz", cfg["fit_stress"])
    cmd = gap_fit_command(cfg, "quip_train.xyz", "quip.xml")
    print("  " + " ".join(cmd), flush=True)
    fit = run_measured(cmd, thread_env(1), work / "quip_fit.log", cwd=work)
    predict_cfg = {
        "code": "quip", "model": str(work / "quip.xml"), "test": cfg["test"],
        "repeats": cfg["repeats"], "predictions": str(work / "quip_pred.npz"),
    }
    predicted = run_worker("predict", predict_cfg, work, "quip_predict", 1)
    return {"fit": fit, "predict": predicted, "predictions": np.load(work / "quip_pred.npz")}


def fit_and_predict_gapy(cfg, work, n_jobs, blas_threads, sigma_virial):
    """GAPRegressor fit with ``n_jobs`` threads, then predict_all on the test set.

    ``blas_threads`` (None: OpenBLAS default, all cores) is the BLAS pool size inside
    the process, on top of gapy's ``n_jobs`` joblib threads.
    """
    tag = f"gapy_j{n_jobs}_b{blas_threads}_v{sigma_virial}"
    model = str(work / f"{tag}.npz")
    fit_cfg = dict(cfg, n_jobs=n_jobs, sigma_virial=sigma_virial, model=model)
    fit = run_worker("fit-gapy", fit_cfg, work, f"{tag}_fit", blas_threads)
    predict_cfg = {
        "code": "gapy", "model": model, "test": cfg["test"], "n_jobs": n_jobs,
        "repeats": cfg["repeats"], "predictions": str(work / f"{tag}_pred.npz"),
    }
    predicted = run_worker("predict", predict_cfg, work, f"{tag}_predict", blas_threads)
    return {"fit": fit, "predict": predicted, "predictions": np.load(work / f"{tag}_pred.npz")}


# --------------------------------------------------------------------------- #
# Errors and the table                                                        #
# --------------------------------------------------------------------------- #


def reference_labels(test_frames):
    """Per-structure config_type, atom counts, energies, forces and stresses of the test set."""
    return {
        "config_type": np.array([a.info.get("config_type", "default") for a in test_frames]),
        "n_atoms": np.array([len(a) for a in test_frames]),
        "energy": np.array([a.get_potential_energy() for a in test_frames]),
        "forces": [a.get_forces() for a in test_frames],
        "stress": np.array([a.get_stress() for a in test_frames]),
    }


def errors(reference, predictions):
    """RMSEs per group ("all" and each config_type): meV/atom, eV/A, GPa (per Voigt component)."""
    n_atoms = reference["n_atoms"]
    energy_error = (predictions["energy"] - reference["energy"]) / n_atoms * 1000.0
    force_error = np.split(predictions["forces"] - np.concatenate(reference["forces"]), np.cumsum(n_atoms)[:-1])
    stress_error = (predictions["stress"] - reference["stress"]) * EV_PER_A3_TO_GPA
    out = {}
    for group in ["all"] + sorted(set(reference["config_type"])):
        mask = np.ones(len(n_atoms), bool) if group == "all" else reference["config_type"] == group
        forces = np.concatenate([f for f, m in zip(force_error, mask) if m])
        out[group] = {
            "energy": float(np.sqrt(np.mean(energy_error[mask] ** 2))),
            "forces": float(np.sqrt(np.mean(forces**2))),
            "stress": float(np.sqrt(np.mean(stress_error[mask] ** 2))),
        }
    out["all"]["energy MAE"] = float(np.mean(np.abs(energy_error)))
    out["all"]["forces MAE"] = float(np.mean(np.abs(np.concatenate(force_error))))
    return out


def table_rows(run, reference):
    """Values of one model, keyed by row label."""
    rows = {}
    errs = errors(reference, run["predictions"])
    for quantity, unit in (("energy", "meV/atom"), ("forces", "eV/A"), ("stress", "GPa")):
        for group, values in errs.items():
            rows[f"{quantity} RMSE, {group} ({unit})"] = values[quantity]
        if quantity != "stress":
            rows[f"{quantity} MAE, all ({unit})"] = errs["all"][f"{quantity} MAE"]
    rows["fit wall time (s)"] = run["fit"]["wall"]
    rows["fit CPU time (s)"] = run["fit"]["cpu"]
    rows["fit peak RSS (GiB)"] = run["fit"]["peak_rss"] / 2**30
    predict = run["predict"]
    rows["predict E+F+S (ms/atom)"] = min(predict["predict_seconds"]) / predict["n_atoms"] * 1000.0
    rows["load avg at fit start"] = run["fit"]["load"]
    rows["load avg at predict start"] = predict["load"]
    return rows


def _fmt(value):
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def markdown_table(columns, reference, gapy_fit_seconds):
    """Rows: metrics; columns: QUIP (if run), each gapy model and its ratio to QUIP."""
    values = {name: table_rows(run, reference) for name, run in columns.items()}
    quip = values.get("QUIP")
    header = ["metric"] + (["QUIP"] if quip else [])
    for name in columns:
        if name != "QUIP":
            header += [name] + (["gapy/QUIP"] if quip else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    labels = list(next(iter(values.values())))
    labels.insert(labels.index("fit peak RSS (GiB)"), "gapy fit() alone (s)")
    for label in labels:
        cells = [label]
        if quip:
            cells.append(_fmt(quip.get(label)))
        for name in columns:
            if name == "QUIP":
                continue
            value = gapy_fit_seconds[name] if label == "gapy fit() alone (s)" else values[name][label]
            cells.append(_fmt(value))
            if quip:
                ratio = None
                if quip.get(label) and not label.startswith("load"):
                    ratio = value / quip[label]
                cells.append(_fmt(ratio))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Main                                                                        #
# --------------------------------------------------------------------------- #


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--element", choices=sorted(PUBLISHED), default="Si")
    parser.add_argument("--n-train", type=int, default=None, help="first N training structures (default: all)")
    parser.add_argument("--n-sparse", type=int, default=None, help="default: mlearn's (Si 1000, Mo 2000)")
    parser.add_argument("--fit-stress", action="store_true",
                        help=f"fit virials too (gap_fit sigma {QUIP_SIGMA_VIRIAL} eV/atom)")
    parser.add_argument("--sigma-virial", type=float, nargs="+", default=None,
                        help="gapy virial sigmas in eV/atom, one gapy fit each (implies --fit-stress; "
                             f"default {QUIP_SIGMA_VIRIAL})")
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[2],
                        help="gapy thread counts, one gapy fit each (default: 2)")
    parser.add_argument("--blas-threads", type=int, nargs="+", default=[1],
                        help="BLAS threads in the gapy processes, one gapy fit each; 0: OpenBLAS "
                             "default (all cores) (default: 1)")
    parser.add_argument("--skip-quip", action="store_true")
    parser.add_argument("--two-body", type=float, nargs=3, default=None, metavar=("DELTA", "THETA", "N_SPARSE"),
                        help="add a gapy 2-body term (r_cut of SOAP): delta (eV), theta (A), grid points")
    parser.add_argument("--recommended", action="store_true",
                        help="gapy with its recommended settings (gapy.recommend + evidence, as `gapy fit "
                             "train.xyz`) instead of the published ones; gap_fit keeps the published setup")
    parser.add_argument("--seed", type=int, default=1, help="gap_fit rnd_seed and gapy random_state (CUR)")
    parser.add_argument("--repeats", type=int, default=3, help="timed prediction passes (minimum is kept)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep models, logs and predictions here (default: a temporary directory)")
    args = parser.parse_args(argv)
    args.blas_threads = [b or None for b in args.blas_threads]
    if args.sigma_virial is not None:
        args.fit_stress = True
    elif args.fit_stress:
        args.sigma_virial = [QUIP_SIGMA_VIRIAL]
    else:
        args.sigma_virial = [None]
    return args


def main(argv=None):
    args = parse_args(argv)
    import ase
    from ase.io import read

    published = PUBLISHED[args.element]
    train = args.data_dir / args.element / "train.xyz"
    test = args.data_dir / args.element / "test.xyz"
    train_frames = read(train, ":")[: args.n_train]
    test_frames = read(test, ":")
    cfg = {
        "element": args.element, "cutoff": published["cutoff"], "e0": published["e0"],
        "n_sparse": args.n_sparse or published["n_sparse"], "n_train": len(train_frames),
        "train": str(train), "test": str(test), "repeats": args.repeats, "fit_stress": args.fit_stress,
        "seed": args.seed, "two_body": args.two_body, "recommended": args.recommended,
    }
    print(
        f"# gapy vs QUIP: {args.element}, {len(train_frames)} training structures "
        f"({sum(map(len, train_frames))} atoms), test {len(test_frames)} structures "
        f"({sum(map(len, test_frames))} atoms), n_sparse {cfg['n_sparse']}, "
        f"{'energies+forces+virials' if args.fit_stress else 'energies+forces'}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench_vs_quip_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        columns, fit_seconds = {}, {}
        if not args.skip_quip:
            print("QUIP gap_fit (1 thread) ...", flush=True)
            columns["QUIP"] = fit_and_predict_quip(cfg, work)
            print(f"  fit {columns['QUIP']['fit']['wall']:.1f} s", flush=True)
        for n_jobs, blas, sigma_virial in itertools.product(args.n_jobs, args.blas_threads, args.sigma_virial):
            name = f"gapy n_jobs={n_jobs} BLAS={blas or 'all'}" + (f" σv={sigma_virial}" if args.fit_stress else "")
            if args.recommended:
                name = f"gapy recommended n_jobs={n_jobs} BLAS={blas or 'all'}"
            print(f"{name} ...", flush=True)
            columns[name] = fit_and_predict_gapy(cfg, work, n_jobs, blas, sigma_virial)
            fit_seconds[name] = columns[name]["fit"]["fit_seconds"]
            print(f"  fit {columns[name]['fit']['wall']:.1f} s", flush=True)
        table = markdown_table(columns, reference_labels(test_frames), fit_seconds)
        measured = {name: {"fit": run["fit"], "predict": run["predict"]} for name, run in columns.items()}
        (work / "measurements.json").write_text(json.dumps({"config": cfg, "runs": measured}, indent=1))
        (work / "table.md").write_text(table + "\n")
    print()
    print(table)
    print()
    print(
        f"Machine: {os.cpu_count()} cores, load avg now {os.getloadavg()[0]:.2f}; ase {ase.__version__}; "
        f"QUIP {'skipped' if args.skip_quip else _quippy_version()}; gapy commit {_git_commit()}. "
        "Stress RMSE over the 6 Voigt components; force RMSE over Cartesian components."
    )


def _quippy_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "quippy-ase " + version("quippy-ase")
    except PackageNotFoundError:
        return "unknown version"


def _git_commit():
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2], sys.argv[3])
    else:
        main()

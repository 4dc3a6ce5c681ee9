#!/usr/bin/env python
"""Where does gapy's test energy error above ``gap_fit``'s come from? (issue 13)

Separates the choice of the sparse points from everything else (descriptor, e0, noise
model, solver). On the mlearn data (``bench_vs_quip.py``'s published settings: SOAP
``l_max = n_max = 8``, ``atom_sigma 0.5``, ``zeta 4``, ``delta 1``, sigmas 0.01 eV/atom
and 0.05 eV/A, jitter 1e-8, e0 -0.79 / -4.04 eV, energies and forces), each *arm* is
fitted once per seed and evaluated on the test set:

``gap_fit``
    QUIP's ``gap_fit`` with ``sparse_method=cur_points rnd_seed=SEED`` on one core,
    test predictions with quippy's ``Potential`` (``--quippy-python``).
``gapy-gp-quipX``
    gapy's sparse GP (``gapy.gp``: the K_MM Cholesky with the jitter, the noise-scaled
    QR, sigma_E * sqrt(N_atoms), e0) on QUIP's SOAP vectors and gradients (quippy
    ``Descriptor``) with gap_fit's sparse atoms for SEED: only the solver is gapy's.
    It reproduces ``gap_fit`` (Si seed 1: the same RMSEs to 3 digits) in a few minutes
    instead of an hour, so it stands in for ``gap_fit`` over many seeds.
``gapy-quip-sparse``
    gapy fitted on exactly the environments ``gap_fit`` chooses for ``rnd_seed=SEED``.
    The choice only depends on the SOAP vectors and the seed, so it is read from a
    cheap ``gap_fit sparsify_only_no_fit=T print_sparse_index=FILE`` run on a copy of
    the training file without forces (no descriptor gradients: ~20 s for Si). The
    indices count atoms through the training file, 1-based; when the ``gap_fit`` arm
    ran for the same seed the script checks that its full fit chose the same atoms.
``gapy-cur``
    gapy with its own CUR (``sparse_method="cur"``, ``random_state=SEED``).
``gapy-quip-cur``
    gapy with a Python port of QUIP's ``cur_points`` (``clustering.F90``
    ``cur_decomposition``, called without ``rank`` by ``gp_fit.F90``) applied to gapy's
    SOAP vectors: leverage over the top ``k = (number of singular values > 1e-13) / 2``
    right singular vectors, ``p = min(1, n_sparse * leverage / k)``, keep the
    ``n_sparse`` smallest ``uniform() - p``. gapy's CUR uses all singular vectors
    (``k = min(n_sparse, rank)``) and ``numpy``'s weighted draw without replacement.
``gapy-quip-cur-quipX``
    the same port applied to QUIP's SOAP vectors (quippy ``Descriptor``, through
    ``--quippy-python``): QUIP's choice in distribution, drawn with numpy's generator;
    the gapy model is fitted on gapy's SOAP vectors of those environments.
``gap_fit-gapy-sparse``
    ``gap_fit`` with ``sparse_method=index_file`` on the atoms gapy's CUR chooses for
    SEED (the reverse swap).

For every arm and seed the script prints the test energy RMSE (meV/atom) overall and per
``config_type``, the force RMSE (eV/A) and how many sparse points each ``config_type``
got; then the mean, standard deviation, minimum and maximum over the seeds. Results go
to ``WORK/results.json`` and are reused on the next run with the same ``--work-dir``
(delete an entry, or the file, to refit).

gap_fit-free arms (``gapy-cur``, ``gapy-quip-cur``) run without QUIP; arms that need
``gap_fit`` are skipped with a message when it cannot be found (quippy-ase installs it
inside the ``quippy`` package; ``--gap-fit PATH`` points to it otherwise).

Threads: run with ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` (set here if unset);
gapy fits with ``n_jobs=1``. A full Si ``gap_fit`` takes ~11 min on one free core (much
more on a loaded machine), a gapy fit ~1 min.

Usage (from the project root)::

    python benchmarks/energy_gap_vs_quip.py --element Si --seeds 1 2 3 \\
        --arms gapy-cur gapy-quip-sparse gapy-quip-cur --work-dir /tmp/egap
    python benchmarks/energy_gap_vs_quip.py --element Si --seeds 1 2 --arms gap_fit --work-dir /tmp/egap
    python benchmarks/energy_gap_vs_quip.py --element Si --n-sparse 300 --seeds 1 2 3   # all arms, quicker
    python benchmarks/energy_gap_vs_quip.py --work-dir /tmp/egap --report            # table of what is stored
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_vs_quip import (ATOM_SIGMA, CUTOFF_WIDTH, DEFAULT_DATA_DIR, DELTA, L_MAX, N_MAX,  # noqa: E402
                           PUBLISHED, QUIP_SIGMA_VIRIAL, SIGMA_ENERGY, SIGMA_FORCE, SPARSE_JITTER, ZETA,
                           errors, reference_labels, write_gap_fit_xyz)

ARMS = ("gap_fit", "gapy-gp-quipX", "gapy-quip-sparse", "gapy-cur", "gapy-quip-cur", "gapy-quip-cur-quipX", "gap_fit-gapy-sparse")
NEEDS_GAP_FIT = {"gap_fit", "gapy-gp-quipX", "gapy-quip-sparse", "gap_fit-gapy-sparse", "gapy-quip-cur-quipX"}
TOL_SVD = 1e-13  # QUIP linearalgebra.f95


# --------------------------------------------------------------------------- #
# Sparse choices                                                              #
# --------------------------------------------------------------------------- #


def quip_cur_points(X, n, random_state=None):
    """Port of QUIP's ``cur_decomposition(x, index_out)`` (no ``rank``, ``n_iter=1``).

    ``X`` has one row per environment. Returns ``n`` sorted row indices. As ``gap_fit``
    (``exclude_duplicates``), only one row of identical ones is a candidate.
    """
    rng = np.random.default_rng(random_state)
    distinct = distinct_rows(X)
    lev, rank = leverage(np.asarray(X, dtype=float)[distinct], "half")
    p = np.minimum(lev * n / rank, 1.0)
    return np.sort(distinct[np.argsort(rng.random(len(p)) - p, kind="stable")[:n]])


def distinct_rows(X):
    """Indices of the first of each set of identical rows (to 12 decimals, as gapy)."""
    from gapy.sparsify import _first_occurrences

    return _first_occurrences(np.asarray(X, dtype=float), np.arange(len(X)))


def leverage(X, k):
    """Leverage of each row over the top ``k`` left singular vectors of ``X`` (``k="half"``:
    half the singular values above QUIP's TOL_SVD, as ``cur_points``; ``k="gapy"``: those
    ``gapy.sparsify.cur_points`` keeps, eigenvalues of ``X^T X`` above 1e-12 of the largest)."""
    u, s, _ = np.linalg.svd(np.asarray(X, dtype=float), full_matrices=False)
    if k == "half":
        k = int(np.count_nonzero(s > TOL_SVD)) // 2
    elif k == "gapy":
        k = int(np.count_nonzero(s**2 > s[0] ** 2 * 1e-12))
    return (u[:, :k] ** 2).sum(axis=1), k


def pick_statistics(X, config_types, n, n_draws=50):
    """Mean sparse points per config_type over ``n_draws`` seeds for the four combinations
    of leverage rank (gapy's, QUIP's half) and draw (numpy weighted without replacement as
    gapy; QUIP's ``uniform - p``), and the leverage share of each config_type (markdown).
    Identical rows count once (as in both codes)."""
    distinct = distinct_rows(X)
    X, config_types = np.asarray(X)[distinct], np.asarray(config_types)[distinct]
    types = sorted(set(config_types))
    lines = ["| leverage rank k | draw | " + " | ".join(f"{t} (mean, sd)" for t in types) + " | leverage share "
             + " / ".join(types) + " |", "|" + "---|" * (len(types) + 3)]
    for rank in ("gapy", "half"):
        lev, k = leverage(X, rank)
        share = " / ".join(f"{lev[config_types == t].sum() / lev.sum():.3f}" for t in types)
        for draw in ("gapy", "quip"):
            counts = []
            for seed in range(n_draws):
                rng = np.random.default_rng(seed)
                if draw == "gapy":
                    chosen = rng.choice(len(X), size=n, replace=False, p=lev / lev.sum())
                else:
                    chosen = np.argsort(rng.random(len(X)) - np.minimum(lev * n / k, 1.0), kind="stable")[:n]
                counts.append([np.count_nonzero(config_types[chosen] == t) for t in types])
            counts = np.array(counts)
            cells = " | ".join(f"{m:.1f}, {sd:.1f}" for m, sd in zip(counts.mean(0), counts.std(0)))
            lines.append(f"| {rank} ({k}) | {draw} | {cells} | {share} |")
    return "\n".join(lines)


@contextlib.contextmanager
def fixed_sparse_choice(choose):
    """Make ``GAPRegressor.fit`` take ``choose(X)`` (row indices) as its sparse points.

    ``X`` is every training environment's SOAP vector, in the order of the atoms through
    the training set (one species, no candidate cap, no isolated atom: checked).
    """
    import gapy.estimator as estimator

    original = estimator.select_points

    def select(X, n_sparse, method, species, random_state, zeta):
        chosen = np.asarray(choose(X), dtype=np.int64)
        if len(np.unique(species)) != 1 or len(np.unique(chosen)) != len(chosen):
            raise RuntimeError("fixed_sparse_choice: one species and distinct indices only")
        return np.sort(chosen)

    estimator.select_points = select
    try:
        yield
    finally:
        estimator.select_points = original


# --------------------------------------------------------------------------- #
# QUIP                                                                        #
# --------------------------------------------------------------------------- #


def gap_fit_binary(explicit=None):
    """Path of gap_fit, or None when it cannot be found."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    try:
        import importlib.util

        spec = importlib.util.find_spec("quippy")
        if spec is not None and spec.origin is not None:
            candidates.append(Path(spec.origin).parent / "gap_fit")
    except (ImportError, ValueError):
        pass
    found = shutil.which("gap_fit")
    if found:
        candidates.append(Path(found))
    for gap_fit in candidates:
        if gap_fit.is_file():
            return str(gap_fit)
    return None


def quippy_works(python):
    done = subprocess.run([python, "-c", "import quippy.potential"], capture_output=True)
    return done.returncode == 0


def soap_string(cfg, sparse):
    return (f"soap l_max={L_MAX} n_max={N_MAX} atom_sigma={ATOM_SIGMA} zeta={ZETA} cutoff={cfg['cutoff']} "
            f"cutoff_transition_width={CUTOFF_WIDTH} delta={DELTA} f0=0.0 covariance_type=dot_product "
            f"n_sparse={cfg['n_sparse']} {sparse}")


def run_gap_fit(cfg, work, tag, train_file, seed, sparse, extra=()):
    """Run gap_fit in ``work`` on one core; returns the wall time (s)."""
    cmd = [
        cfg["gap_fit"], f"at_file={train_file}", f"gap={{{soap_string(cfg, sparse)}}}",
        f"default_sigma={{{SIGMA_ENERGY} {SIGMA_FORCE} {QUIP_SIGMA_VIRIAL} 1.0}}",
        f"sparse_jitter={SPARSE_JITTER}", f"e0={{{cfg['element']}:{cfg['e0']}}}", f"gp_file={tag}.xml",
        "energy_parameter_name=dft_energy", "force_parameter_name=dft_forces",
        "virial_parameter_name=dft_virial", f"rnd_seed={seed}", *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    with open(work / f"{tag}.log", "w") as log:
        done = subprocess.run(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"gap_fit failed ({done.returncode}), see {work / (tag + '.log')}")
    return time.perf_counter() - start


def read_index_file(path):
    return np.array(Path(path).read_text().split(), dtype=np.int64) - 1  # QUIP counts from 1


def quip_sparse_choice(cfg, work, seed):
    """Atoms gap_fit's cur_points chooses for ``rnd_seed=seed`` (0-based, through the training set)."""
    index_file = work / f"quip_sparse_s{seed}.idx"
    if not index_file.exists():
        tag = f"quip_sparsify_s{seed}"
        partial = work / f"{tag}.idx.partial"
        partial.unlink(missing_ok=True)  # gap_fit appends
        run_gap_fit(cfg, work, tag, "train_energies.xyz", seed,
                    f"sparse_method=cur_points print_sparse_index={partial.name}", ["sparsify_only_no_fit=T"])
        partial.rename(index_file)
    return read_index_file(index_file)


QUIPPY_WORKER = """
import sys, numpy as np
from ase.io import read
from quippy.potential import Potential
potential = Potential(param_filename=sys.argv[1])
energy, forces = [], []
for atoms in read(sys.argv[2], ":"):
    atoms.calc = potential
    energy.append(atoms.get_potential_energy())
    forces.append(atoms.get_forces())
np.savez(sys.argv[3], energy=np.array(energy), forces=np.concatenate(forces))
"""


def predict_quip(cfg, work, model, test_frames):
    """Energies and forces of the test structures from a gap_fit model, with quippy's
    ``Potential`` (in a subprocess of ``cfg["quippy_python"]``, an interpreter where
    ``import quippy`` works; this one by default). The ``quip`` binary of the
    quippy-ase 0.10.3 wheel segfaults on these models, so it is not used."""
    out = work / f"{Path(model).stem}_pred.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([cfg["quippy_python"], "-c", QUIPPY_WORKER, str(model), "test_positions.xyz", out.name],
                          cwd=work, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"quippy prediction failed ({done.returncode}): {done.stderr[-2000:]}")
    loaded = np.load(out)
    if len(loaded["energy"]) != len(test_frames):
        raise RuntimeError(f"quippy returned {len(loaded['energy'])} energies for {len(test_frames)} structures")
    return {"energy": loaded["energy"], "forces": loaded["forces"], "stress": np.zeros((len(test_frames), 6))}


# --------------------------------------------------------------------------- #
# gapy                                                                        #
# --------------------------------------------------------------------------- #


def fit_gapy(cfg, train_frames, seed, choose=None):
    """GAPRegressor with the published settings; ``choose(X)`` replaces its sparse choice."""
    from gapy import SOAP, GAPRegressor

    element = cfg["element"]
    model = GAPRegressor(
        SOAP(species=[element], r_cut=cfg["cutoff"], n_max=N_MAX, l_max=L_MAX, atom_sigma=ATOM_SIGMA,
             cutoff_width=CUTOFF_WIDTH),
        zeta=ZETA, delta=DELTA, n_sparse=cfg["n_sparse"], sparse_method="cur", sigma_energy=SIGMA_ENERGY,
        sigma_force=SIGMA_FORCE, e0={element: cfg["e0"]}, sparse_jitter=SPARSE_JITTER, n_jobs=1,
        random_state=seed, sparse_candidates=None,
    )
    with fixed_sparse_choice(choose) if choose is not None else contextlib.nullcontext():
        model.fit(train_frames)
    return model


def predict_gapy(model, test_frames):
    results = model.predict_all(test_frames)
    return {"energy": np.array([r["energy"] for r in results]),
            "forces": np.concatenate([r["forces"] for r in results]),
            "stress": np.array([r["stress"] for r in results])}


def sparse_rows_of(model, X):
    """Training rows (environments) whose SOAP vectors are the model's sparse points."""
    sparse = model.gp_.sparse
    lookup = {np.round(row, 10).tobytes(): i for i, row in enumerate(X)}
    rows = [lookup.get(np.round(row, 10).tobytes()) for row in sparse]
    return None if any(r is None for r in rows) else np.array(sorted(rows))


# --------------------------------------------------------------------------- #
# Driver                                                                      #
# --------------------------------------------------------------------------- #


def run_arm(arm, seed, cfg, work, train_frames, test_frames, X, reference):
    """Fit one arm for one seed; its errors, sparse picks per config_type and timing."""
    start = time.perf_counter()
    chosen = None
    if arm == "gap_fit":
        tag = f"gap_fit_s{seed}"
        index_file = work / f"{tag}.idx"
        index_file.unlink(missing_ok=True)
        run_gap_fit(cfg, work, tag, "train.xyz", seed, f"sparse_method=cur_points print_sparse_index={index_file.name}")
        predictions = predict_quip(cfg, work, f"{tag}.xml", test_frames)
        chosen = read_index_file(index_file)
        quick = quip_sparse_choice(cfg, work, seed)
        if not np.array_equal(np.sort(quick), np.sort(chosen)):
            print(f"  warning: the forces-free sparsify run chose other atoms than the full gap_fit (seed {seed})")
    elif arm == "gapy-gp-quipX":
        chosen = quip_sparse_choice(cfg, work, seed)
        quip_X = quip_training_descriptors(cfg, work)
        config = work / f"gp_quipX_s{seed}.json"
        out = work / f"gp_quipX_s{seed}_pred.npz"
        config.write_text(json.dumps({"cutoff": cfg["cutoff"], "element": cfg["element"], "e0": cfg["e0"],
                                      "sparse_rows": chosen.tolist(), "train": str(work / "train.xyz"),
                                      "test": str(work / "test_positions.xyz"), "out": str(out)}))
        np.save(work / "sparse_quipX.npy", quip_X[chosen])
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
        done = subprocess.run([cfg["quippy_python"], str(Path(__file__).resolve()), "_gp_quipX_worker", str(config)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"gapy-gp-quipX worker failed: {done.stderr[-2000:]}")
        loaded = np.load(out)
        predictions = {"energy": loaded["energy"], "forces": loaded["forces"],
                       "stress": np.zeros((len(test_frames), 6))}
    elif arm == "gap_fit-gapy-sparse":
        tag = f"gap_fit_gapy_sparse_s{seed}"
        chosen = np.sort(np.asarray(gapy_cur_choice(cfg, X, seed)))
        (work / f"{tag}.idx").write_text("".join(f"{i + 1}\n" for i in chosen))  # one per line
        run_gap_fit(cfg, work, tag, "train.xyz", seed, f"sparse_method=index_file sparse_file={tag}.idx")
        predictions = predict_quip(cfg, work, f"{tag}.xml", test_frames)
    else:
        if arm == "gapy-quip-sparse":
            chosen = quip_sparse_choice(cfg, work, seed)
            choose = lambda values: chosen  # noqa: E731
        elif arm == "gapy-quip-cur":
            choose = lambda values: quip_cur_points(values, cfg["n_sparse"], seed)  # noqa: E731
        elif arm == "gapy-quip-cur-quipX":
            quip_X = quip_training_descriptors(cfg, work)
            choose = lambda values: quip_cur_points(quip_X, cfg["n_sparse"], seed)  # noqa: E731
        else:
            choose = None
        model = fit_gapy(cfg, train_frames, seed, choose)
        predictions = predict_gapy(model, test_frames)
        chosen = sparse_rows_of(model, X)
    config_types = cfg["config_types"]
    picks = None
    if chosen is not None:
        picks = {t: int(np.count_nonzero(config_types[chosen] == t)) for t in sorted(set(config_types))}
    return {"errors": errors(reference, predictions), "sparse_per_config_type": picks,
            "seconds": time.perf_counter() - start}


def gp_quipX_worker(config_path):
    """Run by an interpreter with quippy: gapy's sparse GP on QUIP's SOAP (see ``gapy-gp-quipX``)."""
    from types import SimpleNamespace

    from ase.data import atomic_numbers
    from ase.io import read
    from quippy.descriptors import Descriptor

    from gapy.gp import IncrementalQR, kernel_rows, kmm_cholesky
    from gapy.kernels import dot_product_kernel

    cfg = json.loads(Path(config_path).read_text())
    z = atomic_numbers[cfg["element"]]
    descriptor = Descriptor(f"soap l_max={L_MAX} n_max={N_MAX} atom_sigma={ATOM_SIGMA} cutoff={cfg['cutoff']} "
                            f"cutoff_transition_width={CUTOFF_WIDTH} n_species=1 species_Z={{{z}}} Z={z}")

    def compute(atoms):
        out = descriptor.calc(atoms, grad=True)
        index = out["grad_index_0based"]
        keys = index[:, 0].astype(np.int64) * len(atoms) + index[:, 1]
        unique, inverse = np.unique(keys, return_inverse=True)
        dpos = np.zeros((len(unique), 3, out["data"].shape[1]))
        np.add.at(dpos, inverse, out["grad_data"])  # periodic images of one neighbour summed
        return out["data"], SimpleNamespace(centers=unique // len(atoms), neighbors=unique % len(atoms), dpos=dpos,
                                            dstrain=None, targets=None)

    sparse = np.load(Path(config_path).parent / "sparse_quipX.npy")
    none = np.zeros(len(sparse), dtype=int)
    kmm, _ = dot_product_kernel(sparse, none, sparse, none, ZETA)
    solver = IncrementalQR(kmm_cholesky(DELTA**2 * kmm, SPARSE_JITTER))
    for atoms in read(cfg["train"], ":"):
        values, grad = compute(atoms)
        rows = kernel_rows(values, np.zeros(len(atoms), int), sparse, none, ZETA, DELTA, grad)
        sigma_energy = SIGMA_ENERGY * np.sqrt(len(atoms))
        target = atoms.info["dft_energy"] - cfg["e0"] * len(atoms)
        solver.add(rows["energy"][None, :] / sigma_energy, [target / sigma_energy])
        solver.add(rows["forces"].reshape(-1, len(sparse)) / SIGMA_FORCE, atoms.arrays["dft_forces"].ravel() / SIGMA_FORCE)
    alpha = solver.solve()
    energy, forces = [], []
    for atoms in read(cfg["test"], ":"):
        values, grad = compute(atoms)
        rows = kernel_rows(values, np.zeros(len(atoms), int), sparse, none, ZETA, DELTA, grad)
        energy.append(rows["energy"] @ alpha + cfg["e0"] * len(atoms))
        forces.append(rows["forces"] @ alpha)
    np.savez(cfg["out"], energy=np.array(energy), forces=np.concatenate(forces))


def gapy_cur_choice(cfg, X, seed):
    """The rows gapy's CUR picks in ``GAPRegressor.fit`` for ``random_state=seed``."""
    from gapy.sparsify import select_points

    return select_points(X, cfg["n_sparse"], "cur", np.zeros(len(X), dtype=int), seed, ZETA)


def training_descriptors(cfg, train_frames, work):
    """gapy's SOAP vector of every training environment (cached in ``work``)."""
    from gapy import SOAP

    path = work / "train_soap.npy"
    if path.exists():
        return np.load(path)
    soap = SOAP(species=[cfg["element"]], r_cut=cfg["cutoff"], n_max=N_MAX, l_max=L_MAX, atom_sigma=ATOM_SIGMA,
                cutoff_width=CUTOFF_WIDTH)
    X = np.concatenate([soap.compute(atoms) for atoms in train_frames])
    np.save(path, X)
    return X


QUIPPY_DESCRIPTOR_WORKER = """
import sys, numpy as np
from ase.io import read
from quippy.descriptors import Descriptor
descriptor = Descriptor(sys.argv[1])
np.save(sys.argv[3], np.concatenate([descriptor.calc(atoms)["data"] for atoms in read(sys.argv[2], ":")]))
"""


def quip_training_descriptors(cfg, work):
    """QUIP's SOAP vector of every training environment (quippy, cached in ``work``)."""
    path = work / "train_soap_quip.npy"
    if not path.exists():
        from ase.data import atomic_numbers

        z = atomic_numbers[cfg["element"]]
        spec = (f"soap l_max={L_MAX} n_max={N_MAX} atom_sigma={ATOM_SIGMA} cutoff={cfg['cutoff']} "
                f"cutoff_transition_width={CUTOFF_WIDTH} n_species=1 species_Z={{{z}}} Z={z}")
        done = subprocess.run([cfg["quippy_python"], "-c", QUIPPY_DESCRIPTOR_WORKER, spec, "train_energies.xyz",
                               path.name], cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"quippy descriptors failed: {done.stderr[-2000:]}")
    return np.load(path)


def summary_table(results, groups):
    """Mean, sd, min and max over seeds per arm (markdown)."""
    header = (["arm", "seeds"] + [f"E {g} mean (sd) [min-max]" for g in groups] + ["F all mean", "Surface picks mean"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in ARMS:
        runs = results.get(arm, {})
        if not runs:
            continue
        seeds = sorted(runs, key=int)
        cells = [arm, ",".join(seeds)]
        for g in groups:
            values = np.array([runs[s]["errors"].get(g, {}).get("energy", np.nan) for s in seeds])
            cells.append(f"{values.mean():.2f} ({values.std(ddof=1) if len(values) > 1 else 0:.2f}) "
                         f"[{values.min():.2f}-{values.max():.2f}]")
        cells.append(f"{np.mean([runs[s]['errors']['all']['forces'] for s in seeds]):.4f}")
        picks = [runs[s]["sparse_per_config_type"] for s in seeds if runs[s]["sparse_per_config_type"]]
        cells.append(f"{np.mean([p.get('Surface', 0) for p in picks]):.1f}" if picks else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed_table(results, groups):
    header = ["arm", "seed"] + [f"E {g}" for g in groups] + ["F all", "sparse picks per config_type", "s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in ARMS:
        for seed, run in sorted(results.get(arm, {}).items(), key=lambda item: int(item[0])):
            cells = [arm, seed] + [f"{run['errors'].get(g, {}).get('energy', float('nan')):.2f}" for g in groups]
            cells += [f"{run['errors']['all']['forces']:.4f}", json.dumps(run["sparse_per_config_type"]),
                      f"{run['seconds']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_data_dir():
    """``../shared/data/mlearn`` from the project root, or from the main checkout of a git worktree."""
    if DEFAULT_DATA_DIR.is_dir():
        return DEFAULT_DATA_DIR
    try:
        common = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                capture_output=True, text=True, check=True).stdout.strip()
        return (Path(common).parent / ".." / "shared" / "data" / "mlearn").resolve()
    except (OSError, subprocess.CalledProcessError):
        return DEFAULT_DATA_DIR


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--element", choices=sorted(PUBLISHED), default="Si")
    parser.add_argument("--n-sparse", type=int, default=None, help="default: mlearn's (Si 1000, Mo 2000)")
    parser.add_argument("--n-train", type=int, default=None, help="first N training structures (default: all)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--gap-fit", default=None, help="path of gap_fit (default: quippy's, or on PATH)")
    parser.add_argument("--quippy-python", default=None,
                        help="Python interpreter where `import quippy` works, for gap_fit's test predictions "
                             "(default: this one)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: ../shared/data/mlearn")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="models, logs and results.json (default: a new temporary directory)")
    parser.add_argument("--report", action="store_true", help="only print the tables of stored results")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="work directories of other runs whose results.json are merged into this one's")
    parser.add_argument("--picks", action="store_true",
                        help="also print the expected sparse points per config_type of each CUR variant on gapy's "
                             "SOAP vectors (50 draws each; no fit)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import tempfile

    args.data_dir = args.data_dir or default_data_dir()
    from ase import Atoms
    from ase.io import read, write

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="energy_gap_vs_quip_"))
    work.mkdir(parents=True, exist_ok=True)
    published = PUBLISHED[args.element]
    n_sparse = args.n_sparse or published["n_sparse"]
    train_frames = read(args.data_dir / args.element / "train.xyz", ":")[: args.n_train]
    test_frames = read(args.data_dir / args.element / "test.xyz", ":")
    key = f"{args.element} n_train={len(train_frames)} n_sparse={n_sparse}"
    results_path = work / "results.json"
    stored = json.loads(results_path.read_text()) if results_path.exists() else {}
    for other in args.merge:  # results of runs in other work directories (e.g. run side by side)
        for other_key, arms in json.loads((other / "results.json").read_text()).items():
            for arm, runs in arms.items():
                stored.setdefault(other_key, {}).setdefault(arm, {}).update(runs)
    if args.merge:
        results_path.write_text(json.dumps(stored, indent=1))
    results = stored.setdefault(key, {})
    groups = ["all"] + sorted({a.info.get("config_type", "default") for a in test_frames})
    if not args.report:
        gap_fit = gap_fit_binary(args.gap_fit)
        quippy_python = args.quippy_python or sys.executable
        arms = list(args.arms)
        if gap_fit is None:
            skipped = [arm for arm in arms if arm in NEEDS_GAP_FIT]
            if skipped:
                print(f"gap_fit not found: skipping {', '.join(skipped)}")
            arms = [arm for arm in arms if arm not in NEEDS_GAP_FIT]
        needs_quippy = [arm for arm in arms
                        if arm in ("gap_fit", "gapy-gp-quipX", "gapy-quip-cur-quipX", "gap_fit-gapy-sparse")]
        if needs_quippy and not quippy_works(quippy_python):
            print(f"quippy cannot be imported by {quippy_python} (see --quippy-python): skipping "
                  f"{', '.join(needs_quippy)}")
            arms = [arm for arm in arms if arm not in needs_quippy]
        cfg = {
            "element": args.element, "cutoff": published["cutoff"], "e0": published["e0"], "n_sparse": n_sparse,
            "gap_fit": gap_fit, "quippy_python": quippy_python,
            "config_types": np.concatenate([[a.info.get("config_type", "default")] * len(a) for a in train_frames]),
        }
        print(f"# {key}: {sum(map(len, train_frames))} training environments, test {len(test_frames)} structures "
              f"({sum(map(len, test_frames))} atoms); work dir {work}", flush=True)
        if gap_fit is not None:
            write_gap_fit_xyz(train_frames, work / "train.xyz", with_virial=False)
            energies_only = []
            for atoms in train_frames:
                copy = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                copy.info["config_type"] = atoms.info.get("config_type", "default")
                copy.info["dft_energy"] = atoms.get_potential_energy()
                energies_only.append(copy)
            write(work / "train_energies.xyz", energies_only, format="extxyz")
            write(work / "test_positions.xyz", [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
                                                for a in test_frames], format="extxyz")
        X = training_descriptors(cfg, train_frames, work)
        if args.picks:
            distinct = cfg["config_types"][distinct_rows(X)]
            print(f"\n## Sparse points per config_type, {n_sparse} of {len(distinct)} distinct environments ("
                  + ", ".join(f"{t} {np.count_nonzero(distinct == t)}" for t in sorted(set(distinct))) + ")\n")
            print(pick_statistics(X, cfg["config_types"], n_sparse) + "\n", flush=True)
        reference = reference_labels(test_frames)
        for seed in args.seeds:
            for arm in arms:
                if str(seed) in results.get(arm, {}):
                    continue
                print(f"{arm} seed {seed} ...", flush=True)
                run = run_arm(arm, seed, cfg, work, train_frames, test_frames, X, reference)
                results.setdefault(arm, {})[str(seed)] = run
                results_path.write_text(json.dumps(stored, indent=1))
                cells = ", ".join(f"{g} {run['errors'][g]['energy']:.2f}" for g in groups if g in run["errors"])
                print(f"  energy RMSE (meV/atom) {cells}; forces {run['errors']['all']['forces']:.4f} eV/A; "
                      f"sparse {run['sparse_per_config_type']}; {run['seconds']:.0f} s", flush=True)
    print(f"\n## {key}: test energy RMSE (meV/atom) per seed\n")
    print(per_seed_table(results, groups))
    print(f"\n## {key}: over seeds (sd with ddof=1)\n")
    print(summary_table(results, groups))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_gp_quipX_worker":
        gp_quipX_worker(sys.argv[2])
    else:
        main()

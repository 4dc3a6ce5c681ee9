#!/usr/bin/env python
"""How fit time, peak memory and prediction time grow with the data.

Fit: the mlearn Si training set repeated 1x, 4x, 16x (13,233 to 211,728 environments),
with the published GAP settings (SOAP n_max = l_max = 8, r_cut 5.4 A, zeta 4, 1000 CUR
sparse points, sigmas 0.01 eV/atom and 0.05 eV/A), in three ways:

* ``list``: the structures read into a list and fitted with ``sparse_candidates=None``
  (every descriptor held to choose the sparse points: gapy before issue 12);
* ``stream``: ``fit(path)``, one thread: the file is read structure by structure on each
  pass and the sparse points are chosen among at most ``sparse_candidates`` (20,000)
  environments;
* ``cluster``: ``fit(path)`` on a local dask cluster of 2 worker processes of one thread
  each (``LocalCluster(processes=True)``), the tasks reading their own structures.

Each fit runs in a fresh subprocess; the table gives the fit's wall time (reading
included, cluster start-up excluded) and the peak resident memory of the client process
(which also runs the local scheduler) and of each worker process (``ru_maxrss``).

Prediction: a model fitted on 1x predicts energy, forces and stress of rattled diamond
Si cells of about 100 to 100,000 atoms, without and with standard deviations (one
thread; time per atom, the minimum of ``--repeats`` passes after a warm-up).

Usage (from the project root; a few minutes per 1x of data and mode)::

    python benchmarks/bench_scaling.py                          # 1x, 4x, 16x; all modes
    python benchmarks/bench_scaling.py --sizes 1 4 --modes stream cluster --skip-predict
    python benchmarks/bench_scaling.py --skip-fit --cells 100 1000 --std-cells 100 1000
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
_CANDIDATES = [root / "shared" / "data" / "mlearn" / "Si" / "train.xyz" for root in (PROJECT_ROOT.parent,
                                                                                   PROJECT_ROOT.parent.parent)]
#: The mlearn Si training set beside the project (or beside the folder of a worktree).
DEFAULT_DATA = next((p.resolve() for p in _CANDIDATES if p.exists()), _CANDIDATES[0])
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
GIB = 2.0**30


def _peak_rss() -> float:
    """Peak resident memory of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def _model(config, **params):
    from gapy import SOAP, GAPRegressor

    soap = SOAP(["Si"], r_cut=5.4, n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
    return GAPRegressor(soap, zeta=4, delta=1.0, n_sparse=config["n_sparse"], sigma_energy=0.01,
                        sigma_force=0.05, e0={"Si": -0.79}, random_state=1, **params)


# --------------------------------------------------------------------------- #
# Workers (fresh subprocesses)                                                #
# --------------------------------------------------------------------------- #


def _warm_up():
    """Import gapy and run its kernels once on a tiny structure (numba cache loads)."""
    from ase.build import bulk

    from gapy import SOAP

    SOAP(["Si"], r_cut=3.0, n_max=2, l_max=1).compute(bulk("Si", "diamond", a=5.43), gradients=True)


class _SeparateCluster:
    """A dask scheduler and 2 one-thread workers started as ``dask`` command-line processes."""

    def __enter__(self):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.scheduler_address = f"tcp://127.0.0.1:{port}"
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        self.processes = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", str(port),
                                                   "--dashboard-address", ":0"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        time.sleep(3)
        for _ in range(2):
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.scheduler_address, "--nthreads", "1",
                 "--memory-limit", "0", "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import distributed

        with distributed.Client(self.scheduler_address) as client:
            client.wait_for_workers(2, timeout=120)
        return self

    def __exit__(self, *exc):
        for process in self.processes[::-1]:
            process.terminate()
            process.wait(timeout=30)


def worker_fit(config):
    mode, path = config["mode"], config["path"]
    result = {"mode": mode, "size": config["size"]}
    if mode in ("cluster", "remote"):
        import distributed
        from joblib import parallel_config

        if mode == "cluster":
            cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                               dashboard_address=None, memory_limit=None)
        else:  # scheduler and workers in their own processes, as on a real cluster
            cluster = _SeparateCluster()
        with cluster, distributed.Client(cluster.scheduler_address) as client:
            client.run(_warm_up)  # gapy imported, numba kernels loaded: start-up is not timed
            start = time.perf_counter()
            with parallel_config(backend="dask"):
                model = _model(config, n_jobs=2).fit(path)
            result["fit_s"] = time.perf_counter() - start
            result["worker_peak_bytes"] = sorted(client.run(_peak_rss).values())
    elif mode == "list":
        from ase.io import read

        _warm_up()
        start = time.perf_counter()
        frames = read(path, ":")
        model = _model(config, sparse_candidates=None).fit(frames)
        result["fit_s"] = time.perf_counter() - start
    else:
        _warm_up()
        start = time.perf_counter()
        model = _model(config).fit(path)
        result["fit_s"] = time.perf_counter() - start
    result["client_peak_bytes"] = _peak_rss()
    result["n_environments"] = sum(model.n_environments_.values())
    if config.get("test"):  # accuracy of the model, to see what the candidate cap costs
        import numpy as np
        from ase.io import read

        test = read(config["test"], ":")
        model.set_params(n_jobs=1)
        predictions = model.predict_all(test, properties=("energy", "forces"))
        n_atoms = np.array([len(a) for a in test])
        energy = np.array([p["energy"] for p in predictions]) / n_atoms
        reference = np.array([a.get_potential_energy() for a in test]) / n_atoms
        forces = np.concatenate([p["forces"].ravel() for p in predictions])
        reference_forces = np.concatenate([a.get_forces().ravel() for a in test])
        result["energy_rmse_mev"] = 1000 * float(np.sqrt(np.mean((energy - reference) ** 2)))
        result["force_rmse"] = float(np.sqrt(np.mean((forces - reference_forces) ** 2)))
    if config.get("save"):
        model.save(config["save"])
    return result


def _cell(n_target, seed=0):
    import numpy as np
    from ase.build import bulk

    unit = bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms
    n = max(1, round((n_target / 8) ** (1 / 3)))
    reps = [n, n, n]
    k = 0
    while 8 * np.prod(reps) < 0.9 * n_target:  # fill up towards the target with one axis at a time
        reps[k % 3] += 1
        k += 1
    atoms = unit.repeat(reps)
    atoms.rattle(0.05, seed=seed)
    return atoms


def worker_predict(config):
    from gapy import load

    model = load(config["model"])
    model.set_params(n_jobs=1)
    rows = []
    for n_target in config["cells"]:
        atoms = _cell(n_target)
        for with_std in (False, True):
            if with_std and n_target not in config["std_cells"]:
                continue
            model.predict_all([atoms[:8]], return_std=with_std)  # warm-up (numba, caches)
            best = float("inf")
            for _ in range(config["repeats"] if len(atoms) < 20000 else 1):
                start = time.perf_counter()
                model.predict_all([atoms], return_std=with_std)
                best = min(best, time.perf_counter() - start)
            rows.append({"n_atoms": len(atoms), "std": with_std, "seconds": best,
                         "us_per_atom": 1e6 * best / len(atoms)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"predict": rows, "peak_bytes": _peak_rss()}


# --------------------------------------------------------------------------- #
# Driver                                                                      #
# --------------------------------------------------------------------------- #


def run_worker(kind, config, work):
    config_path = work / f"{kind}-{config.get('mode', '')}-{config.get('size', '')}.json"
    config_path.write_text(json.dumps(config))
    env = dict(os.environ)
    for variable in THREAD_VARIABLES:
        env[variable] = "1"
    env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(config_path)]
    completed = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({completed.returncode}); config {config_path}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def repeated_file(data: Path, size: int, work: Path) -> Path:
    path = work / f"train_x{size}.xyz"
    if not path.exists():
        text = data.read_text()
        with open(path, "w") as handle:
            for _ in range(size):
                handle.write(text)
    return path


def fit_table(results):
    base = {}
    for r in results:
        if r["size"] == min(x["size"] for x in results if x["mode"] == r["mode"]):
            base[r["mode"]] = r
    lines = ["| mode | data | environments | fit time (s) | time / env. vs smallest | client peak (GiB) | "
             "vs smallest | worker peaks (GiB) | vs smallest | test RMSE E (meV/atom), F (eV/A) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        b = base[r["mode"]]
        per_env = (r["fit_s"] / r["n_environments"]) / (b["fit_s"] / b["n_environments"])
        workers = r.get("worker_peak_bytes")
        worker_text = ", ".join(f"{w / GIB:.2f}" for w in workers) if workers else "-"
        worker_ratio = f"{max(workers) / max(b['worker_peak_bytes']):.2f}x" if workers else "-"
        lines.append(f"| {r['mode']} | {r['size']}x | {r['n_environments']:,} | {r['fit_s']:.0f} | {per_env:.2f} | "
                     f"{r['client_peak_bytes'] / GIB:.2f} | {r['client_peak_bytes'] / b['client_peak_bytes']:.2f}x | "
                     f"{worker_text} | {worker_ratio} | "
                     + (f"{r['energy_rmse_mev']:.2f}, {r['force_rmse']:.4f} |" if "force_rmse" in r else "- |"))
    return "\n".join(lines)


def predict_table(rows):
    lines = ["| atoms | energy, forces, stress: us/atom | with stds: us/atom |", "|---|---|---|"]
    for n in sorted({r["n_atoms"] for r in rows}):
        plain = [r for r in rows if r["n_atoms"] == n and not r["std"]]
        std = [r for r in rows if r["n_atoms"] == n and r["std"]]
        lines.append(f"| {n:,} | {plain[0]['us_per_atom']:.0f} | "
                     f"{std[0]['us_per_atom']:.0f} |" if std else f"| {n:,} | {plain[0]['us_per_atom']:.0f} | - |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="extxyz training file to repeat")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16], help="repetitions of the data")
    parser.add_argument("--modes", nargs="+", default=["list", "stream", "cluster"],
                        choices=["list", "stream", "cluster", "remote"],
                        help="remote: the scheduler and workers as separate processes (the client alone is measured)")
    parser.add_argument("--list-sizes", type=int, nargs="+", default=[1, 4],
                        help="sizes run in the 'list' mode (holding every descriptor)")
    parser.add_argument("--n-sparse", type=int, default=1000)
    parser.add_argument("--cells", type=int, nargs="+", default=[100, 1000, 10000, 100000],
                        help="approximate atoms of the prediction cells")
    parser.add_argument("--std-cells", type=int, nargs="+", default=[100, 1000, 10000],
                        help="cells also predicted with standard deviations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-fit", action="store_true")
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep data and models here")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, config_path = args.worker
        config = json.loads(Path(config_path).read_text())
        result = worker_fit(config) if kind == "fit" else worker_predict(config)
        print(json.dumps(result))
        return

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gapy-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work directory {work}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
          flush=True)
    model_path = work / "model_x1.gapy"
    results, predictions = [], []
    if not args.skip_fit:
        for mode in args.modes:
            for size in (args.list_sizes if mode == "list" else args.sizes):
                path = repeated_file(args.data, size, work)
                test = args.data.with_name("test.xyz")
                config = {"mode": mode, "size": size, "path": str(path), "n_sparse": args.n_sparse,
                          "test": str(test) if test.exists() and test != args.data else None,
                          "save": str(model_path) if (mode == "stream" and size == 1) else None}
                result = run_worker("fit", config, work)
                results.append(result)
                print(json.dumps(result), flush=True)
        print("\n" + fit_table(results))
    if not args.skip_predict:
        if not model_path.exists():
            config = {"mode": "stream", "size": 1, "path": str(repeated_file(args.data, 1, work)),
                      "n_sparse": args.n_sparse, "save": str(model_path)}
            run_worker("fit", config, work)
        config = {"model": str(model_path), "cells": args.cells, "std_cells": args.std_cells,
                  "repeats": args.repeats}
        predictions = run_worker("predict", config, work)["predict"]
        print("\n" + predict_table(predictions))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"fit": results, "predict": predictions}, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Effect of ``sparse_candidates`` (a seeded sample of environments to choose the sparse
points from) on the test accuracy, against CUR over every environment.

Fits ``GAPRegressor`` with the mlearn published GAP settings on the mlearn training set of
one element, for several seeds and caps, and prints the test RMSE of energy (meV/atom)
and forces (eV/A) as mean +- standard deviation over the seeds, with the fit time.
``--repeat R`` fits on the training set repeated R times (the same structures, so R x
the environments: the situation the cap is for).

Usage (from the project root)::

    python benchmarks/bench_sparse_candidates.py --element Si --caps none 2000 5000 --seeds 0 1 2 3 4
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = next((p.resolve() for p in (HERE.parent / ".." / "shared" / "data" / "mlearn",
                                    HERE.parent / ".." / ".." / "shared" / "data" / "mlearn") if p.exists()),
            Path("../shared/data/mlearn"))  # beside the project, or beside a worktree folder
PUBLISHED = {"Si": {"r_cut": 5.4, "n_sparse": 1000, "e0": -0.79},
             "Mo": {"r_cut": 5.2, "n_sparse": 2000, "e0": -4.04}}


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--element", choices=sorted(PUBLISHED), default="Si")
    parser.add_argument("--caps", nargs="+", default=["none", "2000", "5000"],
                        help="sparse_candidates values ('none': every environment)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--repeat", type=int, default=1, help="repeat the training set R times")
    parser.add_argument("--n-sparse", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    args = parser.parse_args(argv)

    from ase.io import read
    from gapy import SOAP, GAPRegressor

    settings = PUBLISHED[args.element]
    train = read(args.data_dir / args.element / "train.xyz", ":") * args.repeat
    test = read(args.data_dir / args.element / "test.xyz", ":")
    n_atoms = np.array([len(a) for a in test])
    reference_energy = np.array([a.get_potential_energy() for a in test]) / n_atoms
    reference_forces = np.concatenate([a.get_forces().ravel() for a in test])
    soap = SOAP([args.element], r_cut=settings["r_cut"], n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
    runs = []
    for cap in args.caps:
        cap_value = None if cap.lower() == "none" else int(cap)
        for seed in args.seeds:
            model = GAPRegressor(soap, zeta=4, delta=1.0, n_sparse=args.n_sparse or settings["n_sparse"],
                                 sparse_candidates=cap_value, sigma_energy=0.01, sigma_force=0.05,
                                 e0={args.element: settings["e0"]}, random_state=seed)
            start = time.perf_counter()
            model.fit(train)
            seconds = time.perf_counter() - start
            predictions = model.predict_all(test, properties=("energy", "forces"))
            energy = np.array([p["energy"] for p in predictions]) / n_atoms
            forces = np.concatenate([p["forces"].ravel() for p in predictions])
            run = {"cap": cap, "seed": seed, "fit_s": seconds,
                   "energy_rmse_mev": 1000 * rmse(energy, reference_energy),
                   "force_rmse": rmse(forces, reference_forces)}
            runs.append(run)
            print(json.dumps(run), flush=True)
    n_env = sum(len(a) for a in train)
    print(f"\n{args.element}, training set x{args.repeat} ({n_env} environments), "
          f"{args.n_sparse or settings['n_sparse']} sparse points (CUR), test set {len(test)} structures")
    print("| sparse_candidates | seeds | energy RMSE (meV/atom) | force RMSE (eV/A) | fit time (s) |")
    print("|---|---|---|---|---|")
    for cap in args.caps:
        mine = [r for r in runs if r["cap"] == cap]
        e = np.array([r["energy_rmse_mev"] for r in mine])
        f = np.array([r["force_rmse"] for r in mine])
        t = np.array([r["fit_s"] for r in mine])
        label = f"none (all {n_env})" if cap.lower() == "none" else cap
        print(f"| {label} | {len(mine)} | {e.mean():.2f} +- {e.std(ddof=1) if len(e) > 1 else 0:.2f} | "
              f"{f.mean():.4f} +- {f.std(ddof=1) if len(f) > 1 else 0:.4f} | {t.mean():.0f} |")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Recommended settings (``gapy.recommend`` + evidence) against the published GAP setup.

For each seed, two gapy fits on the same mlearn training set, evaluated on its test set:

- ``published``: mlearn's gap_fit hyperparameters (SOAP 8/8, r_cut 5.4 Si / 5.2 Mo,
  zeta 4, delta 1, 0.01 eV/atom and 0.05 eV/A, 1000 Si / 2000 Mo CUR sparse points,
  isolated-atom e0), energies and forces fitted;
- ``recommended``: ``gapy.recommend(train)`` (radially scaled SOAP + ZBL, up to 2000
  sparse points per species, with ``--two-body`` a 2-body term too; cutoff and scaling
  radius from the data) and ``maximize_evidence`` (every delta and sigma), no hand-set
  number.

Prints one markdown row per fit: test RMSE and MAE of energy (meV/atom) and forces
(eV/A), the share of test errors within two predicted standard deviations (no
``calibrate``), fit time (evidence search included) and prediction time per atom, then
the mean and spread over seeds. The seed moves CUR and so the energy RMSE by 20-30 %.

Usage (from the project root; needs ../shared/data/mlearn)::

    python benchmarks/bench_recommend.py --element Si --seeds 1 2 3     # ~45 min on 2 cores
"""

import argparse
import time
from pathlib import Path

import ase.io
import numpy as np

from gapy import SOAP, GAPRegressor
from gapy.recommend import recommend

DATA = (Path(__file__).resolve().parent / ".." / ".." / "shared" / "data" / "mlearn").resolve()
PUBLISHED = {"Si": {"r_cut": 5.4, "n_sparse": 1000, "e0": -0.79}, "Mo": {"r_cut": 5.2, "n_sparse": 2000, "e0": -4.04}}


def published_model(element: str, seed: int) -> GAPRegressor:
    setup = PUBLISHED[element]
    soap = SOAP([element], r_cut=setup["r_cut"], n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
    return GAPRegressor(soap, zeta=4, delta=1.0, n_sparse=setup["n_sparse"], sigma_energy=0.01, sigma_force=0.05,
                        e0={element: setup["e0"]}, random_state=seed, n_jobs=2)


def scores(model: GAPRegressor, test) -> dict:
    start = time.perf_counter()
    model.predict_all(test)
    n_atoms = sum(len(atoms) for atoms in test)
    predict_ms = 1e3 * (time.perf_counter() - start) / n_atoms
    results = model.predict_all(test, return_std=True)
    energy = np.array([a.get_potential_energy() / len(a) for a in test])
    forces = np.concatenate([a.get_forces().ravel() for a in test])
    sizes = np.array([len(a) for a in test])
    e_err = np.array([r["energy"] for r in results]) / sizes - energy
    e_std = np.array([r["energy_std"] for r in results]) / sizes
    f_err = np.concatenate([r["forces"].ravel() for r in results]) - forces
    f_std = np.concatenate([r["forces_std"].ravel() for r in results])
    return {"e_rmse": 1e3 * np.sqrt(np.mean(e_err**2)), "e_mae": 1e3 * np.mean(np.abs(e_err)),
            "f_rmse": np.sqrt(np.mean(f_err**2)), "f_mae": np.mean(np.abs(f_err)),
            "e_2std": np.mean(np.abs(e_err) <= 2 * e_std), "f_2std": np.mean(np.abs(f_err) <= 2 * f_std),
            "predict_ms": predict_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--element", choices=sorted(PUBLISHED), default="Si")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--which", nargs="+", default=["published", "recommended"])
    parser.add_argument("--two-body", action="store_true", help="recommend(two_body=True): add the 2-body term")
    args = parser.parse_args()
    train = ase.io.read(DATA / args.element / "train.xyz", ":")
    test = ase.io.read(DATA / args.element / "test.xyz", ":")
    print(f"| {args.element} | seed | E RMSE | E MAE | F RMSE | F MAE | E within 2 std | F within 2 std "
          f"| fit s | predict ms/atom | chosen |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    table = {}
    for seed in args.seeds:
        for which in args.which:
            start = time.perf_counter()
            if which == "published":
                model = published_model(args.element, seed).fit(train)
                chosen = ""
            else:
                recommendation = recommend(train, two_body=args.two_body, random_state=seed)
                model = recommendation.model.set_params(n_jobs=2)
                model.maximize_evidence(train, **recommendation.evidence_options)
                chosen = ", ".join(f"{k}={v:.3g}" for k, v in
                                   {**model.evidence_.deltas, **model.evidence_.sigmas}.items())
            fit_seconds = time.perf_counter() - start
            row = scores(model, test)
            table.setdefault(which, []).append(row)
            print(f"| {which} | {seed} | {row['e_rmse']:.2f} | {row['e_mae']:.2f} | {row['f_rmse']:.4f} "
                  f"| {row['f_mae']:.4f} | {row['e_2std']:.0%} | {row['f_2std']:.0%} | {fit_seconds:.0f} "
                  f"| {row['predict_ms']:.3f} | {chosen} |", flush=True)
    for which, rows in table.items():
        mean = {key: np.mean([r[key] for r in rows]) for key in rows[0]}
        spread = {key: np.std([r[key] for r in rows]) for key in rows[0]}
        print(f"| {which} | mean ± std | {mean['e_rmse']:.2f} ± {spread['e_rmse']:.2f} | {mean['e_mae']:.2f} "
              f"| {mean['f_rmse']:.4f} ± {spread['f_rmse']:.4f} | {mean['f_mae']:.4f} | {mean['e_2std']:.0%} "
              f"| {mean['f_2std']:.0%} | | {mean['predict_ms']:.3f} | |")


if __name__ == "__main__":
    main()

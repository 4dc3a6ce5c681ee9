#!/usr/bin/env python
"""Are gapy's predicted standard deviations honest, before and after ``calibrate``?

For each element of the mlearn data (published hyperparameters, energies and forces
fitted, as in ``bench_vs_quip.py``; stresses are predicted, not fitted): hold out a random 10 % of the training
structures, fit on the rest, predict the test set with standard deviations, then
``model.calibrate(held_out)`` and predict again. Reports per quantity the test RMSE,
RMS(error / std) (1 for calibrated Gaussian errors; heavy tails raise it) and the
fraction of errors within two standard deviations (95.4 %, the target of ``calibrate``).

    python benchmarks/bench_calibration.py [--elements Si Mo] [--seed 0]
"""

import argparse
import time
from pathlib import Path

import numpy as np
from ase.io import read

from gapy import GAPRegressor, SOAP
from gapy.metrics import ALL, compare, error_table

DATA = (Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "mlearn").resolve()
PUBLISHED = {"Si": {"cutoff": 5.4, "n_sparse": 1000, "e0": -0.79},
             "Mo": {"cutoff": 5.2, "n_sparse": 2000, "e0": -4.04}}


def summary(model, test):
    rows = error_table(compare(test, model.predict_all(test, return_std=True)))
    return {row["quantity"]: row for row in rows if row["config_type"] == ALL}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elements", nargs="+", default=["Si", "Mo"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    print("| element | quantity | test RMSE | RMS(err/std) before -> after | within 2 std before -> after "
          "| factor |")
    print("|---|---|---|---|---|---|")
    for element in args.elements:
        start = time.perf_counter()
        train = read(DATA / element / "train.xyz", ":")
        test = read(DATA / element / "test.xyz", ":")
        order = np.random.default_rng(args.seed).permutation(len(train))
        n_held_out = len(train) // 10
        held_out = [train[k] for k in order[:n_held_out]]
        fitted = [train[k] for k in order[n_held_out:]]
        settings = PUBLISHED[element]
        soap = SOAP([element], r_cut=settings["cutoff"], n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
        model = GAPRegressor(soap, zeta=4, delta=1.0, n_sparse=settings["n_sparse"], sigma_energy=0.01,
                             sigma_force=0.05, e0={element: settings["e0"]},
                             n_jobs=args.n_jobs, random_state=args.seed).fit(fitted)
        before = summary(model, test)
        model.calibrate(held_out)
        after = summary(model, test)
        for quantity, row in before.items():
            print(f"| {element} ({len(fitted)} fit / {n_held_out} held out / {len(test)} test) | {quantity} | "
                  f"{row['rmse']:.4g} {row['unit']} | {row['z_rms']:.2f} -> {after[quantity]['z_rms']:.2f} | "
                  f"{row['within_2std']:.1%} -> {after[quantity]['within_2std']:.1%} | "
                  f"{model.std_scale_[quantity]:.2f} |", flush=True)
        print(f"<!-- {element}: {time.perf_counter() - start:.0f} s -->")


if __name__ == "__main__":
    main()

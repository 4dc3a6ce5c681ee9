#!/usr/bin/env python
"""Are gapy's predicted standard deviations honest, before and after ``calibrate``?

For each element of the mlearn data (published hyperparameters, energies and forces
fitted, as in ``bench_vs_quip.py``; stresses are predicted, not fitted): hold out a random 10 % of the training
structures, fit on the rest, predict the test set with standard deviations, then
``model.calibrate(held_out)`` and predict again. Reports per quantity the test RMSE,
RMS(error / std) (1 for calibrated Gaussian errors; heavy tails raise it) and the
fraction of errors within two standard deviations (95.4 %, the target of ``calibrate``).
With ``--recommended`` the model is what ``gapy fit`` gives (``gapy.recommend`` and the
evidence, ``std_noise``: ``calibrate`` then also weighs the noise against the latent
variance), and the rows are per config type too.

    python benchmarks/bench_calibration.py [--elements Si Mo] [--seed 0] [--recommended]
"""

import argparse
import time
from pathlib import Path

import numpy as np
from ase.io import read

from gapy import GAPRegressor, SOAP
from gapy.metrics import ALL, compare, error_table
from gapy.search import fit_recommended

DATA = (Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "mlearn").resolve()
PUBLISHED = {"Si": {"cutoff": 5.4, "n_sparse": 1000, "e0": -0.79},
             "Mo": {"cutoff": 5.2, "n_sparse": 2000, "e0": -4.04}}


def summary(model, test, per_config_type=False):
    comparisons = compare(test, model.predict_all(test, return_std=True))
    rows = error_table(comparisons)
    for row in rows:  # Gaussian negative log-likelihood per value (lower: stds that follow the errors)
        comparison = comparisons[row["quantity"]]
        mask = (comparison.std > 1e-12 * comparison.std.max()) & (
            True if row["config_type"] == ALL else comparison.config_type == row["config_type"])
        z = comparison.error[mask] / comparison.std[mask]
        row["nll"] = float(np.mean(0.5 * np.log(2 * np.pi * comparison.std[mask] ** 2) + 0.5 * z**2))
    return {(row["quantity"], row["config_type"]): row for row in rows
            if per_config_type or row["config_type"] == ALL}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elements", nargs="+", default=["Si", "Mo"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--recommended", action="store_true", help="gapy fit's model instead of the published one")
    args = parser.parse_args()
    print("| element | quantity | test RMSE | RMS(err/std) before -> after | within 2 std before -> after "
          "| NLL per value before -> after | factor |")
    print("|---|---|---|---|---|---|---|")
    for element in args.elements:
        start = time.perf_counter()
        train = read(DATA / element / "train.xyz", ":")
        test = read(DATA / element / "test.xyz", ":")
        order = np.random.default_rng(args.seed).permutation(len(train))
        n_held_out = len(train) // 10
        held_out = [train[k] for k in order[:n_held_out]]
        fitted = [train[k] for k in order[n_held_out:]]
        if args.recommended:
            model = fit_recommended(fitted, GAPRegressor(n_jobs=args.n_jobs, random_state=args.seed))
        else:
            settings = PUBLISHED[element]
            soap = SOAP([element], r_cut=settings["cutoff"], n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
            model = GAPRegressor(soap, zeta=4, delta=1.0, n_sparse=settings["n_sparse"], sigma_energy=0.01,
                                 sigma_force=0.05, e0={element: settings["e0"]},
                                 n_jobs=args.n_jobs, random_state=args.seed).fit(fitted)
        before = summary(model, test, args.recommended)
        model.calibrate(held_out)
        after = summary(model, test, args.recommended)
        for (quantity, config_type), row in before.items():
            weight, later = model.std_noise_weight_.get(quantity), after[quantity, config_type]
            print(f"| {element} ({len(fitted)} fit / {n_held_out} held out / {len(test)} test) | {quantity}"
                  f"{'' if config_type == ALL else ', ' + config_type} | "
                  f"{row['rmse']:.4g} {row['unit']} | {row['z_rms']:.2f} -> {later['z_rms']:.2f} | "
                  f"{row['within_2std']:.1%} -> {later['within_2std']:.1%} | {row['nll']:.2f} -> {later['nll']:.2f} | "
                  f"{model.std_scale_[quantity]:.2f}{'' if weight is None else f' (noise weight {weight:.3g})'} |",
                  flush=True)
        print(f"<!-- {element}: {time.perf_counter() - start:.0f} s -->")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Does uncertainty-driven selection beat random picks? Cu with EMT as the reference.

Three strategies grow the same initial training set (two slightly rattled 32-atom fcc
cells) for a few rounds; each round runs Langevin MD with the current model under mixed
conditions, as an exploration campaign would (three runs of the perfect crystal at
300 K, one at 1400 K, one of a vacancy cell at 1000 K: most snapshots are alike and
easy), and labels ``n_select`` of the snapshots:

* ``diverse``  -- ``select_structures`` (most uncertain, spread out in descriptor space),
* ``top``      -- the ``n_select`` highest force uncertainties (``diverse=False``),
* ``random``   -- ``n_select`` snapshots drawn at random from the same kind of candidates.

Reported: force and energy RMSE on independent EMT trajectories at 600, 1000 and 1400 K
(and a vacancy cell at 1000 K), after the last round, for several seeds, in the same run.

    python benchmarks/bench_active_learning.py [--seeds 3] [--rounds 4]
"""

import argparse
import time

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from sklearn.base import clone

from gapy import GAPRegressor, SOAP
from gapy.sampling import label_structures, run_md, select_structures

CELL = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # 32 atoms
SETTINGS = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=6, l_max=4), n_sparse=300, sigma_energy=0.001,
                        sigma_force=0.02, random_state=0)


def emt_trajectory(atoms, temperature, steps, seed):
    snapshots = run_md(EMT(), atoms, steps, 25, temperature, timestep=2.0, random_state=seed)[0]
    return label_structures(snapshots[1:], EMT(), config_type=f"{temperature:.0f} K")


def test_set():
    vacancy = CELL.copy()
    del vacancy[0]
    frames = []
    for temperature in (600.0, 1000.0, 1400.0):
        frames += emt_trajectory(CELL, temperature, 500, seed=100 + int(temperature))
    return frames + emt_trajectory(vacancy, 1000.0, 500, seed=7)


def errors(model, test):
    predicted = model.predict_all(test, properties=("energy", "forces"))
    force = np.sqrt(np.mean(np.concatenate([(p["forces"] - a.get_forces()).ravel()
                                            for p, a in zip(predicted, test)]) ** 2))
    energy = np.sqrt(np.mean([((p["energy"] - a.get_potential_energy()) / len(a)) ** 2
                              for p, a in zip(predicted, test)]))
    return 1000 * energy, force


def grow(strategy, train, rounds, n_select, seed):
    rng = np.random.default_rng(seed)
    model = clone(SETTINGS).fit(train)
    runs = [(CELL, 300.0), (CELL, 300.0), (CELL, 300.0), (CELL, 1400.0), (CELL[1:], 1000.0)]
    for _ in range(rounds):
        candidates = []
        for start, temperature in runs:
            candidates += run_md(model, start, 200, 5, temperature, timestep=2.0, random_state=rng)[0]
        if strategy == "random":
            chosen = rng.choice(len(candidates), n_select, replace=False)
        else:
            chosen = select_structures(model, candidates, n_select, diverse=strategy == "diverse").indices
        train = train + label_structures([candidates[k] for k in chosen], EMT())
        model = clone(SETTINGS).fit(train)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n-select", type=int, default=4)
    args = parser.parse_args()
    start = time.perf_counter()
    test = test_set()
    initial = []
    for seed in range(2):
        atoms = CELL.copy()
        atoms.rattle(0.03, seed=seed)
        initial.append(atoms)
    train = label_structures(initial, EMT(), config_type="initial")
    e0, f0 = errors(clone(SETTINGS).fit(train), test)
    n_final = len(train) + args.rounds * args.n_select
    print(f"test set: {len(test)} EMT MD frames (600/1000/1400 K, vacancy at 1000 K); initial model "
          f"({len(train)} structures): energy {e0:.2f} meV/atom, forces {f0:.4f} eV/A")
    print(f"\n{args.rounds} rounds x {args.n_select} structures -> {n_final} training structures, "
          f"{args.seeds} seeds\n")
    print("| strategy | energy RMSE (meV/atom) per seed | force RMSE (eV/A) per seed | mean force RMSE |")
    print("|---|---|---|---|")
    means = {}
    for strategy in ("diverse", "top", "random"):
        results = [errors(grow(strategy, train, args.rounds, args.n_select, seed), test)
                   for seed in range(args.seeds)]
        energies = " / ".join(f"{e:.2f}" for e, _ in results)
        forces = " / ".join(f"{f:.4f}" for _, f in results)
        means[strategy] = np.mean([f for _, f in results])
        print(f"| {strategy} | {energies} | {forces} | {means[strategy]:.4f} |", flush=True)
    print(f"\nmean force RMSE, random / diverse: {means['random'] / means['diverse']:.2f}; "
          f"top / diverse: {means['top'] / means['diverse']:.2f}")
    print(f"total time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

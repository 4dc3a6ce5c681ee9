"""Does hot MD push atoms together? Langevin MD of a Si GAP at 2500 K, with and without
the ZBL baseline, and the shortest interatomic distance reached.

Fits two models on the bundled Si data (SOAP r_cut 5.0, n_max = l_max = 6, 300 sparse
points), identical but for ``baseline="zbl"``, and runs the same Langevin trajectory
(64-atom diamond cell, 1 fs, 5 ps by default) with each. A trajectory that brings two
atoms within 0.1 A (gapy refuses such structures) counts as failed.

    python benchmarks/bench_short_range.py [--temperature 2500] [--steps 5000]
"""

import argparse
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from gapy import GAPCalculator, GAPRegressor, SOAP, StructureError
from gapy.datasets import load_si


def shortest_distance(atoms) -> float:
    distances = atoms.get_all_distances(mic=True)
    return float(distances[np.triu_indices(len(atoms), 1)].min())


def run(model, temperature: float, steps: int, seed: int):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    atoms.calc = GAPCalculator(model)
    dynamics = Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.02 / units.fs,
                        rng=np.random.default_rng(seed))
    closest = [shortest_distance(atoms)]
    dynamics.attach(lambda: closest.append(shortest_distance(atoms)), interval=10)
    start = time.perf_counter()
    try:
        dynamics.run(steps)
        status = "completed"
    except StructureError as error:
        status = f"failed at step {dynamics.get_number_of_steps()}: {error}"
    return min(closest), status, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--temperature", type=float, default=2500.0)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    soap = SOAP(["Si"], r_cut=5.0, n_max=6, l_max=6)
    train = load_si("train")
    print("| baseline | shortest distance (A) | trajectory | MD time (s) |\n|---|---|---|---|")
    for baseline in (None, "zbl"):
        model = GAPRegressor(soap, n_sparse=300, e0={"Si": -0.79}, baseline=baseline, n_jobs=2).fit(train)
        shortest, status, seconds = run(model, args.temperature, args.steps, args.seed)
        name = "none" if baseline is None else f"zbl (switch {model.baseline_.r_inner:.2f}-{model.baseline_.r_outer:.2f} A)"
        print(f"| {name} | {shortest:.2f} | {status} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Time the kernel rows of 2-body and 3-body terms against SOAP's, on a 64-atom Si cell.

Rows with forces and virial (``gradients=True``), one structure, one thread (BLAS pinned
by threadpoolctl):

* SOAP: ``SOAP(n_max=8, l_max=8, r_cut=5.4, cutoff_width=0.5).compute`` then
  ``gapy.gp.design.kernel_rows`` with M=1000 sparse points, zeta=4;
* 2-body: ``TwoBody.compute`` then ``gapy.gp.terms.instance_kernel_rows``, M=50 (a grid);
* 3-body: ``ThreeBody.compute`` then ``instance_kernel_rows``, M=200 (from the instances).

Each is called once untimed (numba compilation or cache load, reported as "first call"),
then timed ``--repeat`` times in interleaved rounds (so that load changes on a shared
machine hit all cases alike); the fastest is reported. The prior variances of the 2-body
and 3-body terms (``gapy.gp.term_variance``) are timed too.

Usage (from the project root)::

    PYTHONPATH=. python benchmarks/bench_terms.py [--repeat 10] [--r-cut-3b 4.0 5.4]
"""

import argparse
import time

import numpy as np
from ase.build import bulk
from threadpoolctl import threadpool_limits

from gapy.descriptors import SOAP, ThreeBody, TwoBody
from gapy.gp.design import kernel_rows
from gapy.gp.term_variance import (
    instance_energy_prior_variance,
    instance_force_prior_variance,
    instance_local_energy_prior_variance,
    instance_prior_variances,
    instance_virial_prior_variance,
)
from gapy.gp.terms import instance_kernel_rows
from gapy.sparsify import grid_points, instance_points


def first_call(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def interleaved_best(functions, repeat):
    """Fastest of ``repeat`` timings of each function, measured in rounds (one call of
    each per round), so that a change in the load of a shared machine hits all alike."""
    best = [np.inf] * len(functions)
    for _ in range(repeat):
        for k, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--r-cut-2b", type=float, nargs="+", default=[5.0, 5.4])
    parser.add_argument("--r-cut-3b", type=float, nargs="+", default=[4.0, 5.4])
    parser.add_argument("--no-priors", action="store_true", help="skip timing the prior variances")
    args = parser.parse_args()

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    rng = np.random.default_rng(0)

    with threadpool_limits(1):
        soap = SOAP(["Si"], r_cut=5.4, n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
        values = soap.compute(atoms)
        sparse = np.abs(values[rng.integers(len(values), size=1000)] + 0.02 * rng.normal(size=(1000, values.shape[1])))
        sparse /= np.linalg.norm(sparse, axis=1, keepdims=True)
        species = np.zeros(len(atoms), dtype=int)
        sparse_species = np.zeros(len(sparse), dtype=int)

        def soap_rows():
            v, grad = soap.compute(atoms, gradients=True)
            return kernel_rows(v, species, sparse, sparse_species, 4, 1.0, grad)

        cases = [("SOAP n=l=8 r_cut 5.4", len(atoms), 1000, soap_rows, None)]
        for r_cut in args.r_cut_2b:
            pairs = TwoBody(["Si"], r_cut=r_cut, cutoff_width=1.0)
            grid, grid_classes = grid_points(*pairs.collect([atoms]), 50, r_cut)

            def pair_rows(pairs=pairs, grid=grid, grid_classes=grid_classes):
                return instance_kernel_rows(pairs.compute(atoms, gradients=True), grid, grid_classes, 0.5, 1.0)

            found = pairs.compute(atoms, gradients=True)
            cases.append((f"2-body r_cut {r_cut}", len(found), 50, pair_rows, (found, 0.5)))

        for r_cut in args.r_cut_3b:
            triplets = ThreeBody(["Si"], r_cut=r_cut, cutoff_width=1.0)
            theta = np.array([0.6, 0.5, 0.6])
            points, point_classes = instance_points(*triplets.collect([atoms]), 200, method="random", random_state=0)

            def triplet_rows(triplets=triplets, points=points, point_classes=point_classes, theta=theta):
                found = triplets.compute(atoms, gradients=True)
                return instance_kernel_rows(found, points, point_classes, theta, 1.0)

            found = triplets.compute(atoms, gradients=True)
            cases.append((f"3-body r_cut {r_cut}", len(found), 200, triplet_rows, (found, theta)))

        firsts = [first_call(case[3]) for case in cases]
        bests = interleaved_best([case[3] for case in cases], args.repeat)
        soap_time = bests[0]
        results = [(name, n, m, first, best, extra)
                   for (name, n, m, _, extra), first, best in zip(cases, firsts, bests)]

        print(f"64-atom Si cell, rows with forces and virial, 1 thread, best of {args.repeat}\n")
        print(f"{'term':<24}{'instances':>10}{'M':>6}{'first call (s)':>16}{'rows (ms)':>11}{'/ SOAP':>8}")
        for name, n, m, first, best, _ in results:
            print(f"{name:<24}{n:>10}{m:>6}{first:>16.2f}{1e3 * best:>11.1f}{best / soap_time:>8.3f}")

        if args.no_priors:
            return
        print("\nprior variances (s): total energy, local energies, forces, virial, all in one call")
        for name, _, _, _, _, extra in results:
            if extra is None:
                continue
            found, theta = extra
            timings = []
            for function in (instance_energy_prior_variance, instance_local_energy_prior_variance,
                             instance_force_prior_variance, instance_virial_prior_variance,
                             instance_prior_variances):
                timings.append(interleaved_best([lambda: function(found, theta, 1.0)], 1)[0])
            print(f"{name:<24}" + "".join(f"{t:>9.3f}" for t in timings))


if __name__ == "__main__":
    main()

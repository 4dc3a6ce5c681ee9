#!/usr/bin/env python
"""Where do the exploration drivers go from a crystal-only model? (diagnostic)

The setting of ``bench_active_learning.py --part exploration`` (Cu, EMT as the reference,
two rattled 32-atom fcc cells as training data), one trajectory per driver and start, no
labelling: for the snapshots of each run, the coordination numbers (neighbours within
``--cn-cutoff``), the mean SOAP distance from the perfect crystal and the *coverage* of
each test phase: the median over the test phase's atoms of the Euclidean distance of
their unit SOAP vectors to the nearest one among the snapshots' atoms (0: the run saw
that environment). Also reported: the bias energy at the end (metadynamics), the mean
local-energy variance over ``variance_scale`` at the start (uncertainty bias; far above
1 the bias is saturated and exerts no force), and, with ``--npt``, the same drivers under
an isotropic barostat at zero pressure (``ase.md.langevinbaoab.LangevinBAOAB``), to see
whether a variable cell lets the bias open the structure.

    python benchmarks/diag_exploration.py [--strains 0 0.1 0.3] [--npt]
"""

import argparse
import time
import warnings

import numpy as np
from ase import units
from ase.neighborlist import neighbor_list

from bench_active_learning import CELL, METAD, SETTINGS, UNCERTAINTY, initial_training_set, other_phases
from gapy import StructureError
from gapy.sampling import UncertaintyBias, driver_calculator, run_md, strained_copies
from gapy.sampling.md import _bare_copy, _set_temperature
from sklearn.base import clone


def coordination(frames, cutoff):
    return np.concatenate([np.bincount(neighbor_list("i", atoms, cutoff), minlength=len(atoms)) for atoms in frames])


def npt_run(calculator, start, steps, interval, temperature, seed):
    """Langevin dynamics with an isotropic barostat at zero pressure (snapshots as run_md)."""
    from ase.md.langevinbaoab import LangevinBAOAB

    rng = np.random.default_rng(seed)
    atoms = start.copy()
    atoms.calc = calculator
    _set_temperature(atoms, temperature, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamics = LangevinBAOAB(atoms, 2.0 * units.fs, temperature_K=temperature, externalstress=0.0,
                                 hydrostatic=True, T_tau=50 * units.fs, P_tau=400 * units.fs, rng=rng)
    snapshots = []
    dynamics.attach(lambda: snapshots.append(_bare_copy(atoms)), interval=interval)
    try:
        dynamics.run(steps)
    except StructureError:
        return snapshots[1:], True
    return snapshots[1:], False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strains", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    parser.add_argument("--temperature", type=float, default=600.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cn-cutoff", type=float, default=3.0, help="A, between the first and second shells")
    parser.add_argument("--npt", action="store_true", help="also runs under a barostat at zero pressure")
    args = parser.parse_args()
    train = initial_training_set()
    model = clone(SETTINGS).fit(train)
    descriptor = model.descriptor_
    phases = other_phases()
    crystal = descriptor.compute(CELL)[0]
    tests = {name: np.concatenate(descriptor.compute_many(frames)) for name, frames in phases.items()}
    print("| phase | atoms with CN <= 7 | CN <= 9 | distance from the crystal |\n|---|---|---|---|")
    for name, frames in phases.items():
        cn = coordination(frames, args.cn_cutoff)
        print(f"| {name} | {np.mean(cn <= 7):.2f} | {np.mean(cn <= 9):.2f} | "
              f"{np.linalg.norm(tests[name] - crystal, axis=1).mean():.3f} |")
    print("\n| driver | cell | start strain | stopped | CN <= 7 | CN <= 9 | distance from the crystal | "
          + " | ".join(f"coverage {name}" for name in phases) + " | bias at the end (eV) | time (s) |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(phases) + "---|---|")
    cells = ["fixed"] + (["npt"] if args.npt else [])
    for start in strained_copies([CELL], args.strains):
        saturation = UncertaintyBias(model, **UNCERTAINTY)
        variance = saturation.local_variances(start).mean()
        scale = saturation.effective_variance_scale
        print(f"<!-- strain {start.info['strain']}: uncertainty bias mean variance / variance_scale "
              f"{variance / scale:.2g} -->")
        for cell in cells:
            for driver, options in (("md", None), ("metad", METAD), ("uncertainty", UNCERTAINTY)):
                clock = time.perf_counter()
                calculator = driver_calculator(driver, model, options)
                if cell == "fixed":
                    snapshots, stopped = run_md(calculator, start, args.steps, 10, args.temperature, 2.0,
                                                random_state=0)
                else:
                    snapshots, stopped = npt_run(calculator, start, args.steps, 10, args.temperature, 0)
                cn = coordination(snapshots, args.cn_cutoff)
                values = np.concatenate(descriptor.compute_many(snapshots))
                coverage = [np.median(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (test @ values.T))).min(axis=1))
                            for test in tests.values()]
                bias = calculator.results.get("bias_energy", 0.0) if driver != "md" else 0.0
                print(f"| {driver} | {cell} | {start.info['strain']} | {stopped} | {np.mean(cn <= 7):.2f} | "
                      f"{np.mean(cn <= 9):.2f} | {np.linalg.norm(values - crystal, axis=1).mean():.3f} | "
                      + " | ".join(f"{c:.3f}" for c in coverage)
                      + f" | {bias:.2f} | {time.perf_counter() - clock:.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""MD with uncertainties
=====================

Langevin MD of Si at 1200 K, logging the largest predicted force uncertainty.

Run ``python examples/md_with_uncertainty.py`` (after ``fit_si.py``, or it fits the
model first). With ``compute_std=True`` the calculator adds standard deviations to every
step; the largest force std is the usual signal for active learning: structures where it
is large are worth a DFT calculation. Writes ``md.xyz`` (positions, forces and stds).
Without ``compute_std`` (plain MD) the calculator takes a faster path that skips the
variances; ``calc.get_property("forces_std", atoms)`` still gives them on demand.
"""

import numpy as np
from ase import units
from ase.build import bulk
from ase.constraints import FixCom
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

from fit_si import load_or_fit
from gapy import GAPCalculator
from gapy.calculator import store_results

atoms = bulk("Si", "diamond", a=5.468, cubic=True).repeat((2, 1, 1))  # 16 atoms
rng = np.random.default_rng(0)
temperature = 1200.0  # K
# a perfect crystal turns half of its kinetic energy into potential energy: start at 2 T
kt = 2 * units.kB * temperature
atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * kt))
Stationary(atoms)
atoms.set_constraint(FixCom())
atoms.calc = GAPCalculator(load_or_fit(), compute_std=True)

dynamics = Langevin(atoms, timestep=2.0 * units.fs, temperature_K=temperature, friction=0.02, fixcm=False,
                    rng=rng)
trajectory = []


def log() -> None:
    results = atoms.calc.results
    print(f"{dynamics.get_number_of_steps():4d}  T = {atoms.get_temperature():6.0f} K  "
          f"E = {results['energy']:9.3f} +- {results['energy_std']:.3f} eV  "
          f"max force std = {results['forces_std'].max():.3f} eV/A")
    snapshot = atoms.copy()
    store_results(snapshot, results)
    trajectory.append(snapshot)


dynamics.attach(log, interval=10)
dynamics.run(100)
write("md.xyz", trajectory, format="extxyz")
print(f"wrote md.xyz ({len(trajectory)} frames); model evaluations: {atoms.calc.n_calculations}")

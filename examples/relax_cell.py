"""Relaxing a Si vacancy, positions and cell
=========================================

Relax positions and cell of a Si vacancy with BFGS and ASE's FrechetCellFilter.

Run ``python examples/relax_cell.py`` (after ``fit_si.py``, or it fits the model first).
A 63-atom cell (one atom removed from a 64-atom cube) is relaxed, positions and cell,
until the largest force (and stress times volume per atom) is below 0.02 eV/A; prints
the vacancy formation energy and relaxation volume. Most of the time goes into BFGS's
linear algebra on 198 degrees of freedom and the filter's matrix functions, not the GAP.
"""

import warnings

import numpy as np
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.units import GPa

from fit_si import load_or_fit
from gapy import GAPCalculator

# FrechetCellFilter takes matrix logarithms of near-identity deformations; scipy warns
# about an "inaccurate" result with estimated errors of 1e-13
warnings.filterwarnings("ignore", message="logm result may be inaccurate")
calc = GAPCalculator(load_or_fit())

perfect = bulk("Si", "diamond", a=5.468, cubic=True).repeat(2)
perfect.calc = calc
energy_per_atom = perfect.get_potential_energy() / len(perfect)

atoms = perfect.copy()
del atoms[0]
atoms.calc = calc
print(f"start: max force {np.abs(atoms.get_forces()).max():.3f} eV/A, "
      f"max stress {np.abs(atoms.get_stress()).max() / GPa:.2f} GPa")
BFGS(FrechetCellFilter(atoms), trajectory="relax.traj").run(fmax=0.02, steps=200)
print(f"end: max force {np.abs(atoms.get_forces()).max():.3f} eV/A, "
      f"max stress {np.abs(atoms.get_stress()).max() / GPa:.3f} GPa")
formation = atoms.get_potential_energy() - len(atoms) * energy_per_atom
relaxation_volume = (atoms.get_volume() - perfect.get_volume()) / (perfect.get_volume() / len(perfect))
print(f"vacancy formation energy {formation:.2f} eV (PBE: about 3.6 eV); "
      f"relaxation volume {relaxation_volume:.2f} atomic volumes")
print("trajectory in relax.traj (ase gui relax.traj)")

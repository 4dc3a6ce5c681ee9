"""Equation of state of diamond Si
===============================

Lattice constant and bulk modulus from the GAP.

Run ``python examples/eos.py`` (after ``fit_si.py``, or it fits the model first). Fits a
Birch-Murnaghan equation of state to energies at 11 volumes of the 2-atom cell and writes
``eos.png``. The PBE references are a = 5.47 A and B = 88 GPa.
"""

import numpy as np
from ase.build import bulk
from ase.eos import EquationOfState
from ase.units import GPa

from fit_si import load_or_fit
from gapy import GAPCalculator

calc = GAPCalculator(load_or_fit())
volumes, energies = [], []
for a in np.linspace(5.30, 5.65, 11):
    atoms = bulk("Si", "diamond", a=a)
    atoms.calc = calc
    volumes.append(atoms.get_volume())
    energies.append(atoms.get_potential_energy())

eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
v0, e0, bulk_modulus = eos.fit()
print(f"a0 = {(4 * v0) ** (1 / 3):.4f} A, E0 = {e0 / 2:.4f} eV/atom, B = {bulk_modulus / GPa:.1f} GPa")
eos.plot("eos.png")
print("wrote eos.png")

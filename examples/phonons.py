"""Phonons of diamond Si
=====================

Phonons from the GAP by finite displacements in a 4x4x4 supercell.

Run ``python examples/phonons.py`` (after ``fit_si.py``, or it fits the model first).
Prints the frequencies at Gamma, X and L (commensurate with the supercell, so exact for
the force constants) and writes ``phonons.png`` (band structure). PBE gives about
15.1 THz for the optical mode at Gamma.
"""

import tempfile
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.phonons import Phonons
from ase.units import invcm
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fit_si import load_or_fit
from gapy import GAPCalculator

THZ = 1e12 * 4.135667696e-15  # 1 THz in eV

atoms = bulk("Si", "diamond", a=5.468)  # the GAP lattice constant, see eos.py
calc = GAPCalculator(load_or_fit())
with tempfile.TemporaryDirectory() as cache:  # ase.phonons caches the displaced forces here
    phonons = Phonons(atoms, calc, supercell=(4, 4, 4), delta=0.01, name=str(Path(cache) / "phonon"))
    phonons.run()
    phonons.read(acoustic=True)
    path = atoms.cell.bandpath("GXWKGL", npoints=100)
    bands = phonons.get_band_structure(path, verbose=False)

special = atoms.cell.bandpath().special_points
for name in ("G", "X", "L"):
    frequencies = np.sort(phonons.band_structure([special[name]], verbose=False)[0] / THZ)
    print(f"{name}: " + " ".join(f"{round(f, 2) + 0.0:5.2f}" for f in frequencies) + " THz")  # no "-0.00"
print(f"(1 THz = {THZ / invcm:.2f} cm^-1)")

figure = Figure(figsize=(6, 4), layout="constrained")
FigureCanvasAgg(figure)
axes = figure.add_subplot()
x, ticks, labels = path.get_linear_kpoint_axis()
axes.plot(x, bands.energies[0] / THZ, color="tab:blue")
axes.set_xticks(ticks, [label.replace("G", "Γ") for label in labels])
axes.set_xlim(x[0], x[-1])
axes.set_ylabel("frequency (THz)")
axes.grid(axis="x")
figure.savefig("phonons.png", dpi=120)
print("wrote phonons.png")

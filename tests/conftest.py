"""Shared structures and fitted models for the tests."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk


@pytest.fixture
def rattled_si() -> Atoms:
    """Cubic 8-atom diamond Si, rattled, periodic (cell smaller than 2 r_cut)."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.1, seed=1)
    return atoms


@pytest.fixture
def triclinic_sige() -> Atoms:
    """Two species in a rattled, sheared (triclinic) periodic cell."""
    atoms = bulk("Si", "diamond", a=5.5, cubic=True)
    atoms.symbols[[1, 4, 6]] = "Ge"
    cell = atoms.cell.array.copy()
    cell[1] += 0.6 * cell[0] / np.linalg.norm(cell[0])
    cell[2] += [0.4, -0.3, 0.0]
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.1, seed=2)
    return atoms


@pytest.fixture
def cluster() -> Atoms:
    """A non-periodic Si/Ge cluster of 6 atoms."""
    rng = np.random.default_rng(3)
    positions = np.array(
        [[0, 0, 0], [2.3, 0, 0], [0, 2.4, 0.2], [0.1, 0.2, 2.35], [2.2, 2.1, 0.4], [1.2, 1.1, 1.3]],
        dtype=float,
    )
    positions += rng.normal(scale=0.05, size=positions.shape)
    return Atoms("Si4Ge2", positions=positions)


@pytest.fixture(scope="session")
def si_model():
    """A small but physical Si model (session-wide; do not modify it): 13 bundled DFT
    structures, small SOAP, energies, forces and virials."""
    from gapy import GAPRegressor, SOAP
    from gapy.datasets import load_si

    soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3, atom_sigma=0.5, cutoff_width=1.0)
    frames = load_si("train")[::3]
    return GAPRegressor(soap, n_sparse=30, sigma_virial=0.05, e0={"Si": -0.79}, random_state=0).fit(frames)

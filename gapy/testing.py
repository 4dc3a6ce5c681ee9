"""Finite-difference and structure helpers for testing gapy and code built on it."""

from typing import Callable

import numpy as np
from ase import Atoms


def finite_difference_positions(
    function: Callable[[Atoms], np.ndarray], atoms: Atoms, step: float = 1e-5
) -> np.ndarray:
    """Central differences of ``function(atoms)`` with respect to every position.

    Returns
    -------
    ndarray of shape (n_atoms, 3) + function(atoms).shape
    """
    out = []
    for j in range(len(atoms)):
        for a in range(3):
            displaced = []
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.positions[j, a] += sign * step
                displaced.append(np.asarray(function(moved)))
            out.append((displaced[0] - displaced[1]) / (2.0 * step))
    out = np.array(out)
    return out.reshape((len(atoms), 3) + out.shape[1:])


def finite_difference_strain(
    function: Callable[[Atoms], np.ndarray], atoms: Atoms, step: float = 1e-5
) -> np.ndarray:
    """Central differences of ``function(atoms)`` under the deformation ``r -> (1 + eps) r``.

    Returns
    -------
    ndarray of shape (3, 3) + function(atoms).shape
        Element ``[a, b]`` is the derivative with respect to ``eps[a, b]``.
    """
    out = np.zeros((3, 3) + np.shape(function(atoms)))
    for a in range(3):
        for b in range(3):
            displaced = []
            for sign in (1.0, -1.0):
                deformation = np.eye(3)
                deformation[a, b] += sign * step
                moved = atoms.copy()
                moved.positions = atoms.positions @ deformation.T
                moved.cell = atoms.cell.array @ deformation.T
                displaced.append(np.asarray(function(moved)))
            out[a, b] = (displaced[0] - displaced[1]) / (2.0 * step)
    return out


def random_rotation(seed: int = 0) -> np.ndarray:
    """A random proper rotation matrix (determinant +1)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotated(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    """A copy of ``atoms`` with positions and cell rotated by ``rotation``."""
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T
    out.cell = atoms.cell.array @ rotation.T
    return out


def assert_allclose_relative(actual, desired, rtol: float, what: str = "") -> None:
    """Check ``max|actual - desired| <= rtol * max|desired|`` and that ``desired`` is not ~0.

    A gradient check that passes on all-zero arrays proves nothing; this refuses it.

    Raises
    ------
    AssertionError
        The arrays differ by more than ``rtol``, or ``desired`` is ~0 (at most 1e-8).
    """
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    scale = np.abs(desired).max()
    if not scale > 1e-8:
        raise AssertionError(f"{what}: reference is ~0 (max {scale:.3g}); the check is empty")
    error = np.abs(actual - desired).max()
    if not error <= rtol * scale:
        raise AssertionError(f"{what}: max error {error:.3g} > {rtol} * {scale:.3g}")

"""Finite-difference and structure helpers for testing gapy and code built on it."""

from typing import Callable

import numpy as np
from ase import Atoms


def finite_difference_positions(
    function: Callable[[Atoms], np.ndarray], atoms: Atoms, step: float = 1e-5
) -> np.ndarray:
    """Central differences of ``function(atoms)`` with respect to every position.

    Each Cartesian position component is moved by ``+step`` and ``-step`` on a copy of
    ``atoms`` (``2 * 3 * n_atoms`` calls of ``function``); ``atoms`` is not changed.

    Parameters
    ----------
    function : callable
        ``function(atoms) -> array-like`` of any fixed shape, e.g. an energy (eV) or a
        descriptor.
    atoms : ase.Atoms
        The structure to differentiate at.
    step : float, default=1e-5
        Displacement in Angstrom.

    Returns
    -------
    ndarray of shape (n_atoms, 3) + function(atoms).shape
        Derivative with respect to each position (units of ``function`` per Angstrom;
        minus the forces when ``function`` is the energy).

    See Also
    --------
    assert_allclose_relative : Compare the result with an analytic gradient.

    Examples
    --------
    >>> from gapy.testing import finite_difference_positions
    >>> from ase import Atoms
    >>> dimer = Atoms("Si2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 2.3]])
    >>> gradient = finite_difference_positions(lambda a: a.get_distance(0, 1), dimer)
    >>> gradient.shape, gradient[:, 2].round(6)  # d|r1 - r0| / dz0 = -1, / dz1 = +1
    ((2, 3), array([-1.,  1.]))
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

    Positions and cell are both deformed, on a copy of ``atoms`` (``1 + 18`` calls of
    ``function``). For the energy, the result divided by the volume is the stress
    (eV/A^3, ASE sign).

    Parameters
    ----------
    function : callable
        ``function(atoms) -> array-like`` of any fixed shape, e.g. an energy (eV).
    atoms : ase.Atoms
        The structure to differentiate at (usually periodic).
    step : float, default=1e-5
        Strain step (dimensionless).

    Returns
    -------
    ndarray of shape (3, 3) + function(atoms).shape
        Element ``[a, b]`` is the derivative with respect to ``eps[a, b]``.

    Examples
    --------
    >>> from gapy.testing import finite_difference_strain
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> atoms = bulk("Si", cubic=True)
    >>> derivative = finite_difference_strain(lambda a: a.get_volume(), atoms)
    >>> bool(np.allclose(derivative, atoms.get_volume() * np.eye(3)))  # dV/deps = V I
    True
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
    """A random proper rotation matrix (determinant +1).

    Parameters
    ----------
    seed : int, default=0
        Seed of the random matrix: the same seed gives the same rotation.

    Returns
    -------
    ndarray of shape (3, 3)
        An orthogonal matrix with determinant +1.

    Examples
    --------
    >>> from gapy.testing import random_rotation
    >>> import numpy as np
    >>> rotation = random_rotation(1)
    >>> bool(np.allclose(rotation @ rotation.T, np.eye(3))), round(float(np.linalg.det(rotation)), 6)
    (True, 1.0)
    """
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotated(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    """A copy of ``atoms`` with positions and cell rotated by ``rotation``.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (not changed).
    rotation : ndarray of shape (3, 3)
        Rotation matrix applied to column vectors: ``r -> rotation @ r``.

    Returns
    -------
    ase.Atoms
        The rotated copy. Energies are invariant under the rotation, forces rotate with
        it, and the stress transforms as ``rotation @ stress @ rotation.T``.

    Examples
    --------
    >>> from gapy.testing import random_rotation, rotated
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> atoms = bulk("Si")
    >>> turned = rotated(atoms, random_rotation(0))
    >>> bool(np.isclose(turned.get_volume(), atoms.get_volume()))
    True
    """
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T
    out.cell = atoms.cell.array @ rotation.T
    return out


def assert_allclose_relative(actual, desired, rtol: float, what: str = "") -> None:
    """Check ``max|actual - desired| <= rtol * max|desired|`` and that ``desired`` is not ~0.

    A gradient check that passes on all-zero arrays proves nothing; this refuses it.

    Parameters
    ----------
    actual : array-like
        Values to check, e.g. an analytic gradient.
    desired : array-like
        Reference values (same shape), e.g. from :func:`finite_difference_positions`.
    rtol : float
        Tolerance relative to the largest ``|desired|``.
    what : str, default=""
        Name of the quantity, at the start of the error message.

    Raises
    ------
    AssertionError
        The arrays differ by more than ``rtol``, or ``desired`` is ~0 (at most 1e-8).

    Examples
    --------
    >>> from gapy.testing import assert_allclose_relative
    >>> assert_allclose_relative([1.0, 2.001], [1.0, 2.0], rtol=1e-3, what="forces")
    >>> assert_allclose_relative([0.0], [0.0], rtol=1e-3, what="forces")
    Traceback (most recent call last):
    ...
    AssertionError: forces: reference is ~0 (max 0); the check is empty
    """
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    scale = np.abs(desired).max()
    if not scale > 1e-8:
        raise AssertionError(f"{what}: reference is ~0 (max {scale:.3g}); the check is empty")
    error = np.abs(actual - desired).max()
    if not error <= rtol * scale:
        raise AssertionError(f"{what}: max error {error:.3g} > {rtol} * {scale:.3g}")

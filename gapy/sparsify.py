"""Choose sparse points (representative environments or structures).

Each function takes a matrix of row vectors and returns sorted row indices; all are
seeded through ``random_state`` (an int, a ``numpy.random.Generator`` or None).
"""

import hashlib
import logging
from typing import Dict, Optional, Tuple, Union

import numpy as np

from .kernels import kernel_distance_squared

logger = logging.getLogger(__name__)

METHODS = ("cur", "fps", "random")


def random_points(X: np.ndarray, n: int, random_state=None) -> np.ndarray:
    """``n`` rows drawn uniformly without replacement.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Row vectors (only their number is used).
    n : int
        Rows to draw, at most ``n_rows``.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the draw.

    Returns
    -------
    ndarray of int of shape (n,)
        Sorted, distinct row indices.

    Raises
    ------
    ValueError
        ``n`` is larger than the number of rows (or negative).

    Examples
    --------
    >>> from gapy.sparsify import random_points
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(10, 3))
    >>> random_points(X, 3, random_state=0).shape
    (3,)
    """
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(len(X), size=n, replace=False))


def cur_points(X: np.ndarray, n: int, random_state=None) -> np.ndarray:
    """``n`` rows drawn without replacement with probability given by their leverage.

    The leverage of row ``i`` is ``sum_{j<k} U_ij^2 / k`` over the top ``k = min(n, rank)``
    left singular vectors of ``X``. It is computed from the smaller of the ``X^T X`` and
    ``X X^T`` eigenproblems, so memory stays ``O(min(n_rows, n_features)^2)`` (several
    species with a large basis have more features than environments: 5 species with
    ``n_max`` 8 and ``l_max`` 6, 5740 features, took 144 s and 1.7 GB for 320 environments
    of each in ``X^T X``). ``gap_fit``'s ``sparse_method=cur_points`` differs:
    it takes the leverage over the top half of the singular vectors, ``p = min(1, n
    leverage / k)``, and keeps the ``n`` smallest ``uniform - p``; on mlearn Si that picks
    more surface environments, with no measurable effect on the test errors
    (``benchmarks/energy_gap_vs_quip.py``).

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Row vectors, e.g. SOAP vectors of atomic environments.
    n : int
        Rows to draw, at most ``n_rows`` (and at least 1).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the draw.

    Returns
    -------
    ndarray of int of shape (n,)
        Sorted, distinct row indices. Where fewer than ``n`` rows have a non-zero
        leverage (rank-deficient ``X``), the rest are drawn almost uniformly.

    Raises
    ------
    ValueError
        ``n`` is larger than the number of rows (or ``n=0``: the probabilities are NaN).

    References
    ----------
    M. W. Mahoney and P. Drineas, "CUR matrix decompositions for improved data
    analysis", Proc. Natl. Acad. Sci. USA 106, 697 (2009).

    Examples
    --------
    >>> from gapy.sparsify import cur_points
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> chosen = cur_points(X, 5, random_state=0)
    >>> chosen.shape, bool(np.all(np.diff(chosen) > 0))
    ((5,), True)
    """
    rng = np.random.default_rng(random_state)
    wide = X.shape[0] < X.shape[1]  # (fewer rows than features: the left singular vectors directly)
    eigenvalues, eigenvectors = np.linalg.eigh(X @ X.T if wide else X.T @ X)
    keep = eigenvalues > eigenvalues.max() * 1e-12
    order = np.argsort(eigenvalues[keep])[::-1][:n]
    if wide:
        leverage = (eigenvectors[:, keep][:, order] ** 2).sum(axis=1)
    else:
        scaled = eigenvectors[:, keep][:, order] / np.sqrt(eigenvalues[keep][order])
        leverage = ((X @ scaled) ** 2).sum(axis=1)
    probability = np.maximum(leverage, 0.0)
    if np.count_nonzero(probability) < n:  # rank-deficient data: fill uniformly
        probability = probability + 1e-12 * probability.max() + 1e-300
    probability /= probability.sum()
    return np.sort(rng.choice(len(X), size=n, replace=False, p=probability))


def fps_points(
    X: np.ndarray,
    n: int,
    random_state=None,
    zeta: Optional[int] = None,
    weights: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Farthest-point sampling: each new row is the farthest from those already chosen.

    Distances are Euclidean, or with ``zeta`` the kernel distance
    ``d^2 = k(a, a) + k(b, b) - 2 k(a, b)`` of the kernel ``(a . b)^zeta``. The first row
    is drawn at random. With ``weights`` (non-negative, one per row) the first row is the
    heaviest and each next one maximises ``weight * distance``: far from the chosen rows
    and heavy (e.g. uncertain) at once.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Row vectors, e.g. SOAP vectors or structure fingerprints.
    n : int
        Rows to choose, between 1 and ``n_rows`` (larger ``n`` is not checked: indices
        then repeat).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the first row (unused with ``weights``).
    zeta : int, optional
        Kernel exponent: use the kernel distance of ``(a . b)^zeta`` instead of the
        Euclidean distance.
    weights : ndarray of shape (n_rows,), optional
        Non-negative weight of each row, e.g. an uncertainty score.

    Returns
    -------
    ndarray of int of shape (n,)
        Sorted row indices.

    References
    ----------
    G. Imbalzano, A. Anelli, D. Giofré, S. Klees, J. Behler and M. Ceriotti, "Automatic
    selection of atomic fingerprints and reference configurations for machine-learning
    potentials", J. Chem. Phys. 148, 241730 (2018).

    Examples
    --------
    >>> from gapy.sparsify import fps_points
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [1.0], [2.0]])
    >>> fps_points(X, 2, weights=np.array([0.0, 0.0, 1.0, 0.0]))  # heaviest, then farthest
    array([0, 2])
    """
    rng = np.random.default_rng(random_state)
    if zeta is None:
        norms = (X**2).sum(axis=1)

        def distances(i):
            return norms + norms[i] - 2.0 * X @ X[i]
    else:
        def distances(i):
            return kernel_distance_squared(X, X[i:i + 1], zeta)[:, 0]

    if weights is None:
        chosen = [int(rng.integers(len(X)))]
    else:
        weights = np.asarray(weights, dtype=float)
        chosen = [int(np.argmax(weights))]
    nearest = distances(chosen[0])
    for _ in range(1, n):
        nearest[chosen[-1]] = -np.inf
        if weights is None:
            chosen.append(int(np.argmax(nearest)))
        else:
            merit = weights * np.sqrt(np.maximum(nearest, 0.0))
            merit[chosen] = -np.inf
            chosen.append(int(np.argmax(merit)))
        nearest = np.minimum(nearest, distances(chosen[-1]))
    return np.sort(np.array(chosen))


def _first_occurrences(X: np.ndarray, rows: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Positions in ``rows`` of the first row of ``X`` of each distinct value (rounded to
    12 decimals), in order: ``np.unique(np.round(X[rows], 12), axis=0,
    return_index=True)`` sorted, without its several copies of ``X[rows]`` (each row is
    hashed, a chunk at a time)."""
    seen = set()
    first = []
    for start in range(0, len(rows), chunk):
        block = np.round(X[rows[start:start + chunk]], 12)
        block += 0.0  # -0.0 and 0.0 compare equal, as in np.unique
        for i, row in enumerate(block):
            digest = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
            if digest not in seen:
                seen.add(digest)
                first.append(start + i)
    return np.array(first, dtype=np.int64)


def select_points(
    X: np.ndarray,
    n_sparse: Union[int, Dict[int, int]],
    method: str = "cur",
    species: Optional[np.ndarray] = None,
    random_state=None,
    zeta: Optional[int] = None,
    names: Optional[Dict[int, str]] = None,
) -> np.ndarray:
    """Choose sparse rows of ``X``, separately for each species.

    Rows equal to 12 decimals count as duplicates: only the first of them can be
    chosen. The methods are :func:`cur_points`, :func:`fps_points` and
    :func:`random_points`.

    Parameters
    ----------
    X : ndarray of shape (n, n_features)
        Row vectors, e.g. the SOAP vectors of all training environments.
    n_sparse : int or dict
        Points per species, or a dict ``{species: n}`` keyed like ``species``; a species
        missing from the dict gets 0 points (with ``method="random"``; see the Notes).
    method : {"cur", "fps", "random"}, default="cur"
        How the rows of each species are chosen.
    species : ndarray of shape (n,), optional
        Species of each row; all rows are one species when omitted.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the choice.
    zeta : int, optional
        Kernel exponent for ``fps`` in kernel distance (Euclidean distance if omitted).
    names : dict, optional
        Name of each species (e.g. its chemical symbol) in messages, keyed like
        ``species``; default: the ``species`` values.

    Returns
    -------
    ndarray of int of shape (n_chosen,)
        Sorted row indices. Duplicate rows are never chosen twice; where a species has
        fewer distinct rows than asked for, all of them are taken and a warning is logged.

    Raises
    ------
    ValueError
        ``method`` is not one of ``"cur"``, ``"fps"``, ``"random"``.

    Notes
    -----
    A species with 0 points asked for (absent from a dict ``n_sparse``) currently
    gets none with ``"random"``, one with ``"fps"``, and makes ``"cur"`` raise
    ``ValueError`` ("Probabilities contain NaN").

    References
    ----------
    G. Imbalzano, A. Anelli, D. Giofré, S. Klees, J. Behler and M. Ceriotti, "Automatic
    selection of atomic fingerprints and reference configurations for machine-learning
    potentials", J. Chem. Phys. 148, 241730 (2018).

    Examples
    --------
    >>> from gapy.sparsify import select_points
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(40, 4))
    >>> species = np.repeat([0, 1], 20)
    >>> chosen = select_points(X, {0: 3, 1: 5}, "fps", species, random_state=0)
    >>> np.bincount(species[chosen]).tolist()
    [3, 5]
    """
    if method not in METHODS:
        raise ValueError(f"sparse_method must be one of {METHODS}, got {method!r}")
    X = np.asarray(X, dtype=float)
    species = np.zeros(len(X), dtype=int) if species is None else np.asarray(species)
    rng = np.random.default_rng(random_state)
    chosen = []
    for s in np.unique(species):
        n = n_sparse.get(s, 0) if isinstance(n_sparse, dict) else int(n_sparse)
        rows = np.flatnonzero(species == s)
        distinct = rows[_first_occurrences(X, rows)]
        if n >= len(distinct):
            if n > len(distinct):
                logger.warning(
                    "species %s: %d sparse points asked for but only %d distinct "
                    "environments; using all of them", (names or {}).get(s, s), n, len(distinct),
                )
            chosen.append(distinct)
            continue
        # every row distinct and of this species: no copy of X (it may be large)
        candidates = X if len(distinct) == len(X) else X[distinct]
        if method == "cur":
            picked = cur_points(candidates, n, rng)
        elif method == "fps":
            picked = fps_points(candidates, n, rng, zeta)
        else:
            picked = random_points(candidates, n, rng)
        del candidates
        chosen.append(distinct[picked])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def grid_points(
    values: np.ndarray, classes: np.ndarray, n_sparse: int, upper: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Uniform grid of sparse points per class for a one-feature (2-body) descriptor.

    Parameters
    ----------
    values : ndarray of shape (n, 1)
        Observed features (distances, Angstrom), e.g. from ``TwoBody.collect``.
    classes : ndarray of int of shape (n,)
        Class of each observed instance; only the classes seen get points.
    n_sparse : int
        Points per class (>= 2).
    upper : float
        Last grid point (the cutoff, Angstrom).

    Returns
    -------
    sparse : ndarray of shape (n_classes_seen * n_sparse, 1)
        For each class seen in ``classes``, ``n_sparse`` points from its shortest
        observed value to ``upper``, ends included.
    sparse_classes : ndarray of int of shape (n_classes_seen * n_sparse,)
        Class of each sparse point, in increasing order of class.

    Raises
    ------
    ValueError
        ``values`` is not of shape (n, 1), ``n_sparse`` is not an integer >= 2, or the
        shortest value of a class is not below ``upper``.

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.sparsify import grid_points
    >>> values, classes = np.array([[2.2], [2.5], [3.0], [1.8]]), np.array([0, 0, 0, 2])
    >>> sparse, sparse_classes = grid_points(values, classes, n_sparse=3, upper=5.0)
    >>> sparse.ravel().round(3).tolist(), sparse_classes.tolist()
    ([2.2, 3.6, 5.0, 1.8, 3.4, 5.0], [0, 0, 0, 2, 2, 2])
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != 1:
        raise ValueError(f"grid_points needs one feature per instance (shape (n, 1)), got {values.shape}")
    if isinstance(n_sparse, bool) or int(n_sparse) != n_sparse or n_sparse < 2:
        raise ValueError(f"n_sparse must be an integer >= 2 for a grid, got {n_sparse!r}")
    classes = np.asarray(classes)
    points, labels = [], []
    for c in np.unique(classes):
        low = values[classes == c, 0].min()
        if not low < upper:
            raise ValueError(f"class {c}: shortest value {low} is not below upper={upper}")
        points.append(np.linspace(low, upper, int(n_sparse)))
        labels.append(np.full(int(n_sparse), c))
    if not points:
        return np.zeros((0, 1)), np.zeros(0, dtype=np.int64)
    return np.concatenate(points)[:, None], np.concatenate(labels).astype(np.int64)


def instance_points(
    values: np.ndarray,
    classes: np.ndarray,
    n_sparse: Union[int, Dict[int, int]],
    method: str = "cur",
    theta=None,
    random_state=None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Sparse points chosen among observed instances (pairs, triplets), per class.

    :func:`select_points` with the classes as species; with ``theta`` (one length scale
    per feature) the features are divided by it first, so that ``fps`` measures distances
    in units of the kernel's length scales (features of a 3-body descriptor have
    different units).

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
        Observed features of the instances, e.g. from ``ThreeBody.collect``.
    classes : ndarray of int of shape (n,)
        Class of each instance; points are chosen separately for each class.
    n_sparse : int or dict
        Points per class, or a dict ``{class: n}`` (as ``n_sparse`` of
        :func:`select_points`, with classes for species).
    method : {"cur", "fps", "random"}, default="cur"
        How the instances of each class are chosen.
    theta : float or array-like of shape (n_features,), optional
        Length scale of each feature (units of the features); the features are divided
        by it before the choice. The returned points are not scaled.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the choice.

    Returns
    -------
    sparse : ndarray of shape (M, n_features)
        The chosen instances' features, unscaled, in the order of ``values``.
    sparse_classes : ndarray of int of shape (M,)
        Class of each chosen instance.

    Raises
    ------
    ValueError
        ``method`` is not one of ``"cur"``, ``"fps"``, ``"random"``.

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.sparsify import instance_points
    >>> rng = np.random.default_rng(0)
    >>> values = rng.uniform(2.0, 8.0, size=(30, 3))
    >>> classes = np.repeat([0, 1], 15)
    >>> sparse, sparse_classes = instance_points(values, classes, 4, "fps", theta=[1.0, 2.0, 1.0],
    ...                                          random_state=0)
    >>> sparse.shape, np.bincount(sparse_classes).tolist()
    ((8, 3), [4, 4])
    """
    values = np.asarray(values, dtype=float)
    scaled = values if theta is None else values / np.asarray(theta, dtype=float)
    chosen = select_points(scaled, n_sparse, method, species=np.asarray(classes), random_state=random_state)
    return values[chosen], np.asarray(classes)[chosen].astype(np.int64)


class CandidateReservoir:
    """A seeded uniform sample of at most ``cap`` rows per species, from rows streamed in.

    Rows arrive in groups (the environments of one structure). Row ``i`` of group ``g``
    gets the key ``u = Generator(seed, g).random()[i]`` and the reservoir keeps, per
    species, the ``cap`` rows of smallest key (bottom-k sampling): a uniform sample
    without replacement that depends only on the seed and the data, not on the order in
    which groups arrive or on how they are split between processes. Memory is
    ``O(cap * n_features)`` per species (``1.25 cap`` rows at most while streaming).
    Below the cap every row is kept.

    Parameters
    ----------
    cap : int or None
        Rows kept per species; None keeps every row.
    seed : int
        Seed of the keys.

    Examples
    --------
    >>> reservoir = CandidateReservoir(cap=3, seed=0)
    >>> for g in range(4):
    ...     reservoir.add(g, np.zeros(2, dtype=int), np.full((2, 1), float(g)))
    >>> values, species, origin, seen = reservoir.result()
    >>> values.shape, seen
    ((3, 1), {0: 8})
    """

    def __init__(self, cap: Optional[int], seed: int):
        self.cap = None if cap is None else int(cap)
        self.seed = int(seed)
        self._held: Dict[int, list] = {}  # species: [(keys, origin, values), ...]
        self._count: Dict[int, int] = {}
        self._seen: Dict[int, int] = {}
        self._threshold: Dict[int, float] = {}

    def add(self, group: int, species: np.ndarray, values: np.ndarray) -> None:
        """Offer the rows ``values`` (of species ``species``) of group ``group``."""
        species = np.asarray(species)
        keys = np.random.default_rng([self.seed, int(group)]).random(len(species))
        rows = np.arange(len(species))
        for s in np.unique(species).tolist():
            mask = species == s
            self._seen[s] = self._seen.get(s, 0) + int(np.count_nonzero(mask))
            if self.cap is not None and s in self._threshold:
                mask &= keys < self._threshold[s]
            if not mask.any():
                continue
            origin = np.stack([np.full(np.count_nonzero(mask), int(group)), rows[mask]], axis=1)
            self._held.setdefault(s, []).append((keys[mask], origin, np.asarray(values)[mask]))
            self._count[s] = self._count.get(s, 0) + len(origin)
            if self.cap is not None and self._count[s] > self.cap + max(self.cap // 4, 1):
                self._compact(s)

    def _compact(self, s: int) -> None:
        """Keep the ``cap`` rows of smallest key of species ``s``, in arrival order,
        copying each kept row once (no concatenated copy of the pieces)."""
        parts = self._held.pop(s)
        keys = np.concatenate([part[0] for part in parts])
        origin = np.concatenate([part[1] for part in parts])
        pieces = [part[2] for part in parts]
        del parts  # ``pieces`` holds the only references: _take_rows frees them as it goes
        if len(keys) > self.cap:
            keep = np.sort(np.argpartition(keys, self.cap - 1)[:self.cap])
            self._threshold[s] = float(keys[keep].max())
        else:
            keep = np.arange(len(keys))
        values = _take_rows(pieces, keep)
        self._held[s] = [(keys[keep], origin[keep], values)]
        self._count[s] = len(keep)

    @property
    def overflowed(self) -> Dict[int, int]:
        """Species whose rows did not all fit, with the number of rows seen."""
        return {s: n for s, n in self._seen.items() if self.cap is not None and n > self.cap}

    def result(self):
        """The rows kept, in the order (group, row) they were offered in; empties the reservoir.

        Returns
        -------
        values : ndarray of shape (n, n_features)
        species : ndarray of shape (n,)
        origin : ndarray of int of shape (n, 2)
            Group and row index of each row.
        seen : dict
            Rows offered per species.
        """
        for s in list(self._held):
            if self.cap is not None and self._count[s] > self.cap:
                self._compact(s)
        parts = [(origin, values, s) for s in sorted(self._held) for _, origin, values in self._held[s]]
        self._held, self._count = {}, {}  # the reservoir is emptied: memory for one copy only
        if not parts:
            return np.zeros((0, 0)), np.zeros(0, dtype=int), np.zeros((0, 2), dtype=int), dict(self._seen)
        origin = np.concatenate([part[0] for part in parts])
        species = np.concatenate([np.full(len(part[0]), part[2]) for part in parts])
        order = np.lexsort((origin[:, 1], origin[:, 0]))
        pieces = [part[1] for part in parts]
        del parts
        values = _take_rows(pieces, order)
        return values, species[order], origin[order], dict(self._seen)


def _take_rows(pieces: list, rows: np.ndarray) -> np.ndarray:
    """``np.concatenate(pieces)[rows]`` without the concatenated copy: each row is copied
    once into the result, and each piece is dropped from ``pieces`` once copied from."""
    offsets = np.concatenate([[0], np.cumsum([len(piece) for piece in pieces])])
    out = np.empty((len(rows), pieces[0].shape[1]), dtype=pieces[0].dtype)
    piece_of = np.searchsorted(offsets, rows, side="right") - 1
    by_piece = np.argsort(piece_of, kind="stable")  # positions in ``rows``, piece by piece
    bounds = np.searchsorted(piece_of[by_piece], np.arange(len(pieces) + 1))
    for j in range(len(pieces)):
        mine = by_piece[bounds[j]:bounds[j + 1]]
        out[mine] = pieces[j][rows[mine] - offsets[j]]
        pieces[j] = None
    return out

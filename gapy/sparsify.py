"""Choose sparse points (representative environments or structures).

Each function takes a matrix of row vectors and returns sorted row indices; all are
seeded through ``random_state`` (an int, a ``numpy.random.Generator`` or None).
"""

import hashlib
import logging
from typing import Dict, Optional, Union

import numpy as np

from .kernels import kernel_distance_squared

logger = logging.getLogger(__name__)

METHODS = ("cur", "fps", "random")


def random_points(X: np.ndarray, n: int, random_state=None) -> np.ndarray:
    """``n`` rows drawn uniformly without replacement."""
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(len(X), size=n, replace=False))


def cur_points(X: np.ndarray, n: int, random_state=None) -> np.ndarray:
    """``n`` rows drawn without replacement with probability given by their leverage.

    The leverage of row ``i`` is ``sum_{j<k} U_ij^2 / k`` over the top ``k = min(n, rank)``
    left singular vectors of ``X`` (as ``gap_fit``'s ``sparse_method=cur_points``). It is
    computed from the small ``X^T X`` eigenproblem, so memory stays ``O(n_features^2)``.
    """
    rng = np.random.default_rng(random_state)
    eigenvalues, eigenvectors = np.linalg.eigh(X.T @ X)
    keep = eigenvalues > eigenvalues.max() * 1e-12
    order = np.argsort(eigenvalues[keep])[::-1][:n]
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
) -> np.ndarray:
    """Choose sparse rows of ``X``, separately for each species.

    Parameters
    ----------
    X : ndarray of shape (n, n_features)
    n_sparse : int or dict
        Points per species, or a dict ``{species: n}`` keyed like ``species``.
    method : {"cur", "fps", "random"}
    species : ndarray of shape (n,), optional
        Species of each row; all rows are one species when omitted.
    random_state : int, Generator or None
    zeta : int, optional
        Kernel exponent for ``fps`` in kernel distance.

    Returns
    -------
    ndarray of int
        Sorted row indices. Duplicate rows are never chosen twice; where a species has
        fewer distinct rows than asked for, all of them are taken and a warning is logged.
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
                    "environments; using all of them", s, n, len(distinct),
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
        keys, origin, values = (np.concatenate(parts) for parts in zip(*self._held[s]))
        if len(keys) > self.cap:
            keep = np.argpartition(keys, self.cap - 1)[:self.cap]
            keys, origin, values = keys[keep], origin[keep], values[keep]
            self._threshold[s] = float(keys.max())
        self._held[s] = [(keys, origin, values)]
        self._count[s] = len(keys)

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
        parts = [(keys, origin, values, np.full(len(keys), s)) for s in sorted(self._held)
                 for keys, origin, values in self._held[s]]
        self._held, self._count = {}, {}  # the reservoir is emptied: memory for one copy only
        if not parts:
            return np.zeros((0, 0)), np.zeros(0, dtype=int), np.zeros((0, 2), dtype=int), dict(self._seen)
        origin = np.concatenate([p[1] for p in parts])
        species = np.concatenate([p[3] for p in parts])
        values = np.concatenate([p[2] for p in parts])
        del parts
        order = np.lexsort((origin[:, 1], origin[:, 0]))
        if np.any(np.diff(order) != 1):
            values, species, origin = values[order], species[order], origin[order]
        return values, species, origin, dict(self._seen)

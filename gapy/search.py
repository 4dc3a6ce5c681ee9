"""Geometric settings compared by cross-validation: a small search around the recommendation.

:func:`gapy.recommend` chooses the discrete and geometric settings (cutoff, widths, basis,
``zeta``) by rules and :meth:`GAPRegressor.maximize_evidence` the deltas and sigmas. The
evidence is no judge of the geometric settings (it follows the force errors and prefers
short cutoffs, see ``docs/gp.md``); held-out errors are. :func:`search_settings` fits the
recommended model and every candidate of a grid of overrides on the same folds of the
training structures (recommendation and evidence on each training part) and compares their
held-out errors. The test sets of this field are small and one split moves an RMSE by
20-30 %, so a candidate replaces the recommendation only when it is better on every fold.
"""

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from sklearn.base import clone
from sklearn.model_selection import KFold
from tqdm.auto import tqdm

from ._validation import check_integer
from .exceptions import GapyError
from .estimator import GAPRegressor
from .metrics import compare
from .recommend import recommend
from .structures import as_frames

#: Quantities compared, in the units of :func:`gapy.metrics.compare`.
QUANTITIES = ("energy", "forces", "stress")


def _keys(model: GAPRegressor) -> Dict[str, str]:
    """The label keys of ``model``, as keyword arguments."""
    return {name: getattr(model, name) for name in ("energy_key", "forces_key", "stress_key", "virial_key")}


def fit_recommended(frames: Sequence[Atoms], template: Optional[GAPRegressor] = None, *,
                    overrides: Optional[dict] = None, sample_weight=None) -> GAPRegressor:
    """:func:`gapy.recommend` on ``frames``, then the deltas and sigmas by the evidence, as ``gapy fit`` does.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        Labelled training structures.
    template : GAPRegressor, optional
        Gives the label keys, ``random_state``, ``n_jobs`` and ``verbose``; its other
        settings are not used.
    overrides : dict, optional
        ``set_params`` values that replace the recommended ones (kept by the evidence).
    sample_weight : array-like, optional
        Per-structure weights of the fit (0 leaves a structure out).

    Returns
    -------
    GAPRegressor
        Fitted, with the recommendation's reasons in ``provenance_["recommended"]``.

    Examples
    --------
    >>> from gapy.datasets import load_si
    >>> model = fit_recommended(load_si("train")[:8], overrides={"descriptor__r_cut": 4.0})
    >>> model.descriptor.r_cut, "recommended" in model.provenance_
    (4.0, True)
    """
    template = GAPRegressor() if template is None else template
    seed = template.random_state if isinstance(template.random_state, (int, np.integer)) else 0
    recommendation = recommend(frames, **_keys(template), overrides=overrides, random_state=int(seed))
    recommendation.model.set_params(n_jobs=template.n_jobs, verbose=template.verbose)
    return recommendation.fit(frames, sample_weight=sample_weight)


def _named(error: Exception, message: str) -> Exception:
    """``error``'s type with ``message`` (a ``ValueError`` when that type takes no message alone)."""
    try:
        return type(error)(message)
    except Exception:
        return ValueError(message)


def choose(scores: np.ndarray) -> int:
    """The candidate with the lowest mean score among those scoring lower than candidate 0 on every fold; 0 if none.

    Parameters
    ----------
    scores : ndarray of shape (n_candidates, n_folds)
        Lower is better; candidate 0 is the recommendation.

    Returns
    -------
    int
        Index of the chosen candidate.

    Examples
    --------
    >>> choose(np.array([[1.1, 1.1, 1.2], [1.0, 1.15, 1.0], [1.0, 1.0, 1.1]]))  # (1 is worse on fold 1)
    2
    """
    better = [k for k in range(1, len(scores)) if np.all(scores[k] < scores[0])]
    return min(better, key=lambda k: np.mean(scores[k])) if better else 0


@dataclass
class SettingsSearch:
    """Held-out errors of the recommended settings and of each candidate, by fold.

    Parameters
    ----------
    candidates : list of dict
        The overrides of each candidate; the first, ``{}``, is the recommendation.
    quantities : list of str
        The quantities compared (``"energy"`` in meV/atom, ``"forces"`` in eV/A,
        ``"stress"`` in GPa), those the held-out structures have labels of.
    errors : ndarray of shape (n_candidates, n_folds, n_quantities)
        Held-out RMSE of each candidate on each fold.
    scores : ndarray of shape (n_candidates, n_folds)
        Each candidate's errors divided by the lowest of all candidates on the same fold
        and quantity, averaged over the quantities (1 is best).
    best : int
        Index of the chosen candidate: the lowest mean score among those whose score is
        lower than the recommendation's on every fold; 0 when there is none.
    recommended : dict
        The recommended values of the settings of the grid (on all the structures).
    model : GAPRegressor or None
        With ``refit``: the chosen settings fitted on all the structures.

    Examples
    --------
    >>> import numpy as np
    >>> search = SettingsSearch([{}, {"zeta": 2}], ["forces"], np.array([[[0.1]], [[0.2]]]),
    ...                         np.array([[1.0], [2.0]]), best=0, recommended={"zeta": 4})
    >>> search.best_overrides
    {}
    >>> print(search.summary().splitlines()[-1])
    kept: the recommendation (no candidate is better on all 1 folds)
    """

    candidates: List[dict]
    quantities: List[str]
    errors: np.ndarray
    scores: np.ndarray
    best: int
    recommended: dict = field(default_factory=dict)
    model: Optional[GAPRegressor] = field(default=None, repr=False)

    @property
    def best_overrides(self) -> dict:
        """The overrides of the chosen candidate (``{}``: the recommendation).

        Examples
        --------
        >>> import numpy as np
        >>> search = SettingsSearch([{}, {"zeta": 2}], ["forces"], np.array([[[0.2, 0.2]], [[0.1, 0.1]]]),
        ...                         np.array([[2.0, 2.0], [1.0, 1.0]]), best=1, recommended={"zeta": 4})
        >>> search.best_overrides
        {'zeta': 2}
        """
        return dict(self.candidates[self.best])

    def summary(self) -> str:
        """A table of the mean and spread over folds of every error, and the choice.

        Returns
        -------
        str
            One line per candidate, then the choice and why.

        Examples
        --------
        >>> import numpy as np
        >>> search = SettingsSearch([{}, {"zeta": 2}], ["forces"], np.array([[[0.2, 0.2]], [[0.1, 0.1]]]),
        ...                         np.array([[2.0, 2.0], [1.0, 1.0]]), best=1, recommended={"zeta": 4})
        >>> print(search.summary().splitlines()[-1])
        chosen: {'zeta': 2} (better than the recommendation on all 2 folds)
        """
        units = {"energy": "meV/atom", "forces": "eV/A", "stress": "GPa"}
        head = "".join(f"{q + ' (' + units[q] + ')':>25}" for q in self.quantities)
        lines = [f"{'candidate':<48}{head}{'score':>14}"]
        for k, overrides in enumerate(self.candidates):
            name = ", ".join(f"{key.replace('descriptor__', '')}={_shown(value)}"
                             for key, value in (overrides or self.recommended).items())
            name = name if overrides else f"recommended: {name}"
            cells = "".join(f"{np.mean(self.errors[k, :, q]):>15.4g} +- {np.std(self.errors[k, :, q]):<6.2g}"
                            for q in range(len(self.quantities)))
            mark = " <" if k == self.best else ""
            lines.append(f"{name[:47]:<48}{cells}{np.mean(self.scores[k]):>8.3f} +- {np.std(self.scores[k]):<4.2g}"
                         f"{mark}")
        n_folds = self.scores.shape[1]
        if self.best:
            lines.append(f"chosen: {self.candidates[self.best]} (better than the recommendation on all {n_folds} "
                         "folds)")
        else:
            lines.append(f"kept: the recommendation (no candidate is better on all {n_folds} folds)")
        return "\n".join(lines)


def _shown(value) -> str:
    """A setting's value for the table: a term by its descriptor's class (``TwoBody(r_cut=5.5)``)."""
    descriptor = getattr(value, "descriptor", None)
    if descriptor is not None and hasattr(descriptor, "r_cut"):
        return f"{type(descriptor).__name__}(r_cut={descriptor.r_cut:g})"
    return repr(value)


def search_settings(frames: Sequence[Atoms], grid: Dict[str, Sequence], template: Optional[GAPRegressor] = None, *,
                    overrides: Optional[dict] = None, n_folds: int = 3, refit: bool = True,
                    progress: bool = False) -> SettingsSearch:
    """Compare the recommended settings with a grid of overrides by K-fold cross-validation.

    Every candidate (the recommendation, then every combination of the values in
    ``grid``) is fitted with :func:`fit_recommended` on the training part of each fold
    (shuffled, seeded by ``template.random_state``) and scored on its held-out part.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        Labelled training structures (at least ``n_folds``).
    grid : dict of str to sequence
        ``set_params`` names (``descriptor__r_cut``, ``zeta``, ``two_body``, ...) and the
        values to try.
    template : GAPRegressor, optional
        Gives the label keys, ``random_state``, ``n_jobs`` and ``verbose``.
    overrides : dict, optional
        ``set_params`` values given by hand, applied to every candidate (the
        recommendation included) before the candidate's own.
    n_folds : int, default=3
        Folds of the cross-validation (at least 2).
    refit : bool, default=True
        Fit the chosen settings on all of ``frames`` (:attr:`SettingsSearch.model`).
    progress : bool, default=False
        A progress bar over the fits.

    Returns
    -------
    SettingsSearch
        Errors and scores by candidate and fold, the choice and the refitted model.

    Raises
    ------
    ValueError
        An empty grid or list of values, fewer structures than folds, a name that
        ``GAPRegressor.set_params`` does not take, or held-out structures without labels.

    Examples
    --------
    >>> from gapy.datasets import load_si
    >>> search = search_settings(load_si("train")[:9], {"descriptor__r_cut": [4.0]}, n_folds=3, refit=False)
    >>> search.candidates, search.quantities, search.errors.shape
    ([{}, {'descriptor__r_cut': 4.0}], ['energy', 'forces', 'stress'], (2, 3, 3))
    """
    frames = as_frames(frames)
    template = GAPRegressor() if template is None else template
    check_integer("n_folds", n_folds, 2)
    if not isinstance(grid, dict) or not grid:
        raise ValueError("grid: give at least one setting and its values, e.g. {'descriptor__r_cut': [4.5, 5.5]}")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not len(values):
            raise ValueError(f"grid[{name!r}]: give a list of values to try, got {values!r}")
    if len(frames) < n_folds:
        raise ValueError(f"{len(frames)} structures cannot make {n_folds} folds: give more structures or fewer folds")
    names = list(grid)
    candidates = [{}] + [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    recommended = recommend(frames, **_keys(template), overrides=overrides).model
    for candidate in candidates[1:]:  # (every name checked before the first fit)
        try:
            clone(recommended).set_params(**candidate)
        except ValueError as error:
            raise ValueError(f"grid: {error}") from None
    seed = template.random_state if isinstance(template.random_state, (int, np.integer)) else 0
    folds = list(KFold(n_folds, shuffle=True, random_state=int(seed)).split(np.arange(len(frames))))
    given, errors = dict(overrides or {}), {}
    with tqdm(total=len(candidates) * n_folds, desc="settings search", unit="fit", disable=not progress) as bar:
        for k, candidate in enumerate(candidates):
            for f, (train, held) in enumerate(folds):
                with warnings.catch_warnings():  # (a sigma on its bound: the final fit says it if it matters)
                    warnings.filterwarnings("ignore", "evidence maximisation", RuntimeWarning)
                    try:
                        model = fit_recommended([frames[i] for i in train], template,
                                                overrides={**given, **candidate})
                    except (ValueError, GapyError) as error:  # named with the candidate that met it, same type
                        raise _named(error, f"candidate {candidate or 'recommended'}, fold {f}: {error}") from error
                # a species its training part lacks cannot be predicted: such structures are not scored in the fold
                held_out = [frames[i] for i in held if set(frames[i].numbers.tolist()) <= set(model.species_.tolist())]
                if not held_out:
                    missing = sorted({chemical_symbols[z] for i in held for z in frames[i].numbers} -
                                     {chemical_symbols[z] for z in model.species_})
                    raise ValueError(f"fold {f}: every held-out structure has a species ({', '.join(missing)}) that "
                                     "the fold's training structures lack: give more structures of it or fewer folds")
                comparisons = compare(held_out, model.predict_all(held_out), **_keys(template))
                for quantity, comparison in comparisons.items():
                    errors[k, f, quantity] = float(np.sqrt(np.mean(comparison.error ** 2)))
                bar.update()
    quantities = [q for q in QUANTITIES if all((k, f, q) in errors for k in range(len(candidates))
                                               for f in range(n_folds))]
    if not quantities:
        raise ValueError("the held-out structures of some fold have no label in common: nothing to compare")
    table = np.array([[[errors[k, f, q] for q in quantities] for f in range(n_folds)]
                      for k in range(len(candidates))])
    scores = np.mean(table / np.maximum(table.min(axis=0), 1e-300), axis=2)
    params = recommended.get_params()
    search = SettingsSearch(candidates, quantities, table, scores, choose(scores),
                            recommended={name: params.get(name) for name in names})
    if refit:
        search.model = fit_recommended(frames, template, overrides={**given, **search.best_overrides} or None)
    return search

"""The active-learning loop: molecular dynamics with the model (plain or biased),
selection, labelling with any ASE calculator, refit; with a work directory every
reference result is on disk as soon as it exists, and a killed run resumes."""

import contextlib
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, Calculator
from sklearn.base import clone
from tqdm.auto import tqdm

from .._validation import check_choice, check_integer, check_number
from ..exceptions import GapyError, StructureError
from ..labels import label_keys
from ..search import fit_recommended
from ..structures import structure_name
from ._workdir import DIGEST_VERSION, FAILED_FILE, Workdir, frames_digest, frames_digest_v1, through_extxyz
from .md import REFERENCE_FRAMES, _check_interval, _check_start, check_driver_options, driver_calculator, run_md
from .reference import ACTIVE_LEARNING_CONFIG_TYPE, ReferenceFailure, _labelled_copy, reference_results
from .select import SCORES, select_per_run, select_structures

logger = logging.getLogger(__name__)


@dataclass
class Iteration:
    """What one round of :func:`active_learning` saw and did.

    Every parameter is stored as an attribute of the same name.

    Parameters
    ----------
    n_train : int
        Training structures of the model that ran the dynamics.
    n_candidates : int
        MD frames scored.
    max_score : float
        Largest score of the candidates (units of the score, see
        :data:`~gapy.sampling.SCORE_UNITS`).
    median_score : float
        Median score of the candidates.
    selected_scores : ndarray of shape (n_selected,)
        Scores of the structures sent to the reference calculator, largest first.
    md_stopped : int
        Trajectories stopped early (atoms closer than physical, non-finite positions,
        a bias that blew up, or past ``md_max_force_std``).
    n_labelled, n_failed : int
        Reference calculations that gave a label, and that failed (see
        :attr:`ActiveLearningResult.failures`).
    reference_seconds, gapy_seconds : float
        Wall time in reference calculations, and in fitting, dynamics, scoring and
        testing (this iteration, summed over resumed parts).
    test_energy_rmse, test_force_rmse : float or None
        Errors of the model that ran the dynamics on ``test_frames`` (eV/atom, eV/A).

    See Also
    --------
    history_rows : The iterations as table rows.

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.sampling import Iteration
    >>> entry = Iteration(n_train=10, n_candidates=40, max_score=0.8, median_score=0.2,
    ...                   selected_scores=np.array([0.8, 0.5]), md_stopped=0, n_labelled=2)
    >>> entry.n_labelled, entry.n_failed, entry.test_force_rmse
    (2, 0, None)
    """

    n_train: int
    n_candidates: int
    max_score: float
    median_score: float
    selected_scores: np.ndarray
    md_stopped: int
    n_labelled: int = 0
    n_failed: int = 0
    reference_seconds: float = 0.0
    gapy_seconds: float = 0.0
    test_energy_rmse: Optional[float] = None
    test_force_rmse: Optional[float] = None

    def to_dict(self) -> dict:
        """JSON-able fields (``selected_scores`` as a list).

        Returns
        -------
        dict
            Field name to value, as :meth:`from_dict` reads it back (the form stored in
            a work directory's ``state.json``).

        Examples
        --------
        >>> import json
        >>> import numpy as np
        >>> from gapy.sampling import Iteration
        >>> entry = Iteration(n_train=10, n_candidates=40, max_score=0.8, median_score=0.2,
        ...                   selected_scores=np.array([0.8, 0.5]), md_stopped=1)
        >>> values = entry.to_dict()
        >>> values["selected_scores"], values["md_stopped"]
        ([0.8, 0.5], 1)
        >>> text = json.dumps(values)
        """
        out = asdict(self)
        out["selected_scores"] = np.asarray(self.selected_scores, dtype=float).tolist()
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "Iteration":
        """An :class:`Iteration` from the fields of :meth:`to_dict`.

        Parameters
        ----------
        values : dict
            Field name to value (``selected_scores`` any sequence of numbers); not
            modified.

        Returns
        -------
        Iteration
            With ``selected_scores`` as a float ndarray.

        Raises
        ------
        KeyError
            ``values`` has no ``selected_scores``.
        TypeError
            An unknown field, or a required one missing.

        Examples
        --------
        >>> import numpy as np
        >>> from gapy.sampling import Iteration
        >>> entry = Iteration(n_train=10, n_candidates=40, max_score=0.8, median_score=0.2,
        ...                   selected_scores=np.array([0.8, 0.5]), md_stopped=1)
        >>> again = Iteration.from_dict(entry.to_dict())
        >>> again.selected_scores, again.n_train
        (array([0.8, 0.5]), 10)
        """
        values = dict(values)
        values["selected_scores"] = np.asarray(values["selected_scores"], dtype=float)
        return cls(**values)


@dataclass
class ActiveLearningResult:
    """Outcome of :func:`active_learning`.

    Every parameter is stored as an attribute of the same name.

    Parameters
    ----------
    model : GAPRegressor
        Fitted on ``frames``.
    frames : list of ase.Atoms
        The initial training structures followed by every labelled one.
    history : list of Iteration
        Every iteration of the run, those before a resume included.
    converged : bool
        True when the loop stopped because no candidate exceeded ``threshold``.
    failures : list of dict
        Failed reference calculations: ``id`` (``"<iteration>:<candidate>"``), ``kind``
        (``"exception"``, ``"non-finite"``, ``"timeout"``, ``"died"``), ``message``.
    test_energy_rmse, test_force_rmse : float or None
        Errors of the final model on ``test_frames`` (eV/atom, eV/A).

    Examples
    --------
    Returned by :func:`active_learning` (which has a complete example); built here by
    hand:

    >>> from ase.build import bulk
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.sampling import ActiveLearningResult
    >>> result = ActiveLearningResult(model=GAPRegressor(SOAP(["Cu"], r_cut=4.0)),
    ...                               frames=[bulk("Cu", cubic=True)])
    >>> result.converged, result.history, result.failures, result.test_force_rmse
    (False, [], [], None)
    """

    model: object
    frames: List[Atoms]
    history: List[Iteration] = field(default_factory=list)
    converged: bool = False
    failures: List[dict] = field(default_factory=list)
    test_energy_rmse: Optional[float] = None
    test_force_rmse: Optional[float] = None


#: Ways of choosing what to label among the candidates.
SELECTIONS = ("diverse", "top", "random", "per_run")

#: How the loop refits its model: the settings as given, deltas and sigmas by the evidence,
#: or every setting chosen again from the grown training set (:func:`gapy.recommend`).
REFITS = ("fit", "evidence", "recommend")


def errors_on(model, frames: Sequence[Atoms]) -> tuple:
    """Energy RMSE per atom (eV/atom) and force-component RMSE (eV/A) of ``model`` on ``frames``.

    Parameters
    ----------
    model : GAPRegressor
        A fitted model.
    frames : sequence of ase.Atoms
        Labelled structures (energy and forces, e.g. from :func:`label_structures`).

    Returns
    -------
    energy_rmse : float
        Root-mean-square error of the energy per atom over the structures, eV/atom.
    force_rmse : float
        Root-mean-square error over all force components of all atoms, eV/A.

    Examples
    --------
    >>> from gapy.sampling import errors_on, label_structures
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy import GAPRegressor, SOAP
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> frames = label_structures([atoms], EMT())
    >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(frames)
    >>> test = label_structures([bulk("Cu", a=3.58, cubic=True)], EMT())
    >>> energy_rmse, force_rmse = errors_on(model, test)
    >>> bool(energy_rmse >= 0.0), bool(force_rmse < 1e-6)  # zero forces by symmetry in both
    (True, True)
    """
    labels = _test_set_labels(model, frames)
    predicted = model.predict_all(frames, properties=("energy", "forces"))
    energy = np.sqrt(np.mean([((p["energy"] - found.energy) / len(a)) ** 2
                              for p, found, a in zip(predicted, labels, frames)]))
    forces = np.sqrt(np.mean(np.concatenate([(p["forces"] - found.forces).ravel()
                                             for p, found in zip(predicted, labels)]) ** 2))
    return float(energy), float(forces)


def _test_set_labels(model, frames: Sequence[Atoms]) -> list:
    """The energy and forces of each of ``frames`` under ``model``'s label keys.

    Raises
    ------
    gapy.StructureError
        A structure without either, or with a label that is not finite (named, with the key).
    """
    labels = []
    for k, atoms in enumerate(frames):
        found = model._read_labels(atoms, k)
        for label, key in (("energy", model.energy_key), ("forces", model.forces_key)):
            if getattr(found, label) is None:
                raise StructureError(f"test set: {structure_name(atoms, k)} has no {label} under '{key}' "
                                     f"(it has {label_keys(atoms)}): test errors need energy and forces")
        labels.append(found)
    return labels


def _settings(model, frames, starts, reference, *, temperatures, n_select, md_steps, md_interval, timestep, score,
              threshold, md_max_force_std, random_state, driver, driver_options, selection, refit="fit",
              overrides=None) -> dict:
    """What makes a run: a work directory refuses to resume with other values."""
    params = {k: _stable_repr(v) for k, v in sorted(model.get_params(deep=False).items())
              if k not in ("n_jobs", "verbose")}
    if isinstance(random_state, np.random.Generator):
        seed = repr(random_state.bit_generator.state)
    else:
        seed = random_state if random_state is None else int(random_state)
    return {
        "model": params, "digest": DIGEST_VERSION, "training_set": frames_digest(frames), "n_initial": len(frames),
        "starts": frames_digest(starts), "temperatures": [float(t) for t in temperatures], "n_select": n_select,
        "md_steps": md_steps, "md_interval": md_interval, "timestep": float(timestep), "score": score,
        "threshold": threshold, "md_max_force_std": md_max_force_std, "random_state": seed, "driver": driver,
        "driver_options": {k: _stable_repr(v) for k, v in sorted((driver_options or {}).items())},
        "selection": selection,
        # what the labels mean: a resume with another functional, basis or k-points would mix labels
        "reference": {"calculator": f"{type(reference).__module__}.{type(reference).__qualname__}",
                      "parameters": {str(k): _stable_repr(v)
                                     for k, v in sorted(getattr(reference, "parameters", {}).items())}},
        **({} if refit == "fit" else {"refit": refit}),  # (work directories written before it resume)
        **({} if not overrides else {"overrides": {k: _stable_repr(v) for k, v in sorted(overrides.items())}}),
    }


def _stable_repr(value) -> str:
    """``repr`` of a setting that is the same in every process: an object without a ``__repr__`` of
    its own (a DFT code's mixer) is its class and attributes, not its memory address; a set (also
    within lists, tuples and dicts) has its elements sorted, not in the order of the hash seed.

    Examples
    --------
    >>> class Mixer:
    ...     def __init__(self, beta):
    ...         self.beta = beta
    >>> _stable_repr(Mixer(0.05)), _stable_repr([1, "a"]), _stable_repr({"tags": {"Zn", "Al"}})
    ('gapy.sampling.loop.Mixer(beta=0.05)', "[1, 'a']", "{'tags': {'Al', 'Zn'}}")
    """
    if type(value).__repr__ is object.__repr__ and hasattr(value, "__dict__"):
        attributes = ", ".join(f"{k}={_stable_repr(v)}" for k, v in sorted(vars(value).items()))
        return f"{type(value).__module__}.{type(value).__qualname__}({attributes})"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(_with_sorted_sets(value)))


class _SortedSet:
    """A set or frozenset whose ``repr`` lists its elements sorted (by their ``repr``)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        items = ", ".join(sorted(repr(_with_sorted_sets(item)) for item in self.value))
        text = f"{{{items}}}" if items else "set()"
        return f"frozenset({text if items else ''})" if isinstance(self.value, frozenset) else text


def _with_sorted_sets(value):
    """``value`` with every set in it (within plain lists, tuples and dicts) a :class:`_SortedSet`;
    the same ``repr`` as ``value`` when it holds no set."""
    if isinstance(value, (set, frozenset)):
        return _SortedSet(value)
    if type(value) in (list, tuple):
        return type(value)(_with_sorted_sets(item) for item in value)
    if type(value) is dict:
        return {key: _with_sorted_sets(item) for key, item in value.items()}
    return value


def _refit(model, frames: List[Atoms], refit: str, overrides: Optional[dict] = None):
    """``clone(model)`` fitted on ``frames``, as ``refit`` says; with ``"recommend"`` the
    settings of :func:`gapy.recommend` on ``frames`` (``model`` gives the label keys, seed,
    threads and verbosity), then the evidence."""
    if refit != "recommend":
        fresh = clone(model)
        return fresh.maximize_evidence(frames) if refit == "evidence" else fresh.fit(frames)
    return fit_recommended(frames, model, overrides=overrides)


def _unrecorded_failures(store: Workdir, failures: List[dict], labelled: List[Atoms]) -> List[dict]:
    """Records of the structures of ``failed.xyz`` whose failure ``failures`` lacks (the run was killed
    after writing the structure and before saving the state), so that their reference calculation
    is not run again; reading the file also sets a partly written last structure aside."""
    known = {failure["id"] for failure in failures} | {atoms.info["al_id"] for atoms in labelled}
    found = [atoms for atoms in store.read_failed() if atoms.info["al_id"] not in known]
    if found:
        logger.warning("workdir %s: %d failed reference calculations (%s) are in %s but not in the state (the "
                       "run was killed in between): recorded as failed, not run again", store.path, len(found),
                       ", ".join(atoms.info["al_id"] for atoms in found), FAILED_FILE)
    return [{"id": atoms.info["al_id"], "iteration": int(str(atoms.info["al_id"]).split(":")[0]),
             "kind": atoms.info.get("al_failure", "exception"), "attempts": 1,
             "message": f"failed ({atoms.info.get('al_failure', 'exception')}); its message was lost (the run was "
                        f"killed before recording it); the structure is in {FAILED_FILE}"} for atoms in found]


def _retry_failures(store: Workdir, failures: List[dict], labelled: List[Atoms], label, save) -> None:
    """Run ``label`` again on the structures of ``failures`` kept in ``store``, one at a time
    and saved after each; ``failures`` keeps those that fail again and those whose structure
    was not kept."""
    done = {atoms.info["al_id"] for atoms in labelled}
    failures[:] = [failure for failure in failures if failure["id"] not in done]  # (killed before the record)
    kept = {atoms.info["al_id"]: atoms for atoms in store.read_failed()}
    missing = [failure["id"] for failure in failures if failure["id"] not in kept]
    if missing:
        logger.warning("workdir %s: %d failed structures (%s) cannot be tried again: this work directory was "
                       "written before failed structures were kept in %s", store.path, len(missing),
                       ", ".join(missing[:5]), FAILED_FILE)
    n_labelled = len(labelled)
    for failure in [failure for failure in failures if failure["id"] in kept]:
        failures.remove(failure)
        label(kept[failure["id"]], failure["iteration"], failure.get("attempts", 1) + 1)
        save()
    logger.info("workdir %s: tried %d failed reference calculations again: %d labelled",
                store.path, len(kept), len(labelled) - n_labelled)


def active_learning(
    model,
    frames: Sequence[Atoms],
    reference: Calculator,
    starts: Union[Atoms, Sequence[Atoms]],
    *,
    n_iterations: int = 5,
    n_select: int = 4,
    md_steps: int = 200,
    md_interval: int = 10,
    temperature: Union[float, Sequence[float]] = 300.0,
    timestep: float = 1.0,
    score: str = "forces",
    threshold: Optional[float] = None,
    md_max_force_std: Optional[float] = None,
    random_state=None,
    callback: Optional[Callable[[Iteration, object], None]] = None,
    driver: str = "md",
    driver_options: Optional[dict] = None,
    selection: str = "diverse",
    workdir: Optional[Union[str, os.PathLike]] = None,
    reference_timeout: Optional[float] = None,
    test_frames: Optional[Sequence[Atoms]] = None,
    progress: bool = False,
    refit: str = "fit",
    overrides: Optional[dict] = None,
    retry_failed: bool = False,
) -> ActiveLearningResult:
    """Grow a training set where the model is uncertain, and refit.

    Each iteration fits ``clone(model)`` on the training set, runs Langevin dynamics
    with it (``driver``: plain, metadynamics in descriptor space, or biased towards the
    model's uncertainty) from every structure in ``starts`` at every temperature,
    scores the snapshots with the model's own uncertainty, labels the
    :func:`select_structures` choice with ``reference`` and adds them to the training
    set. The loop stops after ``n_iterations`` or when no snapshot scores above
    ``threshold``.

    A reference calculation that raises, returns NaN or infinity, or runs past
    ``reference_timeout`` is logged, recorded in :attr:`ActiveLearningResult.failures`
    and left out; the loop goes on. With ``workdir`` each reference result is written to
    disk as soon as it exists, and calling ``active_learning`` again with the same
    arguments resumes the run (after a crash, a kill or a finished run given more
    ``n_iterations``) without repeating a finished reference calculation; the result is
    the same as that of an uninterrupted run. The structures of failed calculations are
    kept in the work directory (``failed.xyz``); ``retry_failed=True`` tries them again
    when the run resumes (after a longer ``reference_timeout``, or a node that died).
    See ``docs/sampling.md``.

    Parameters
    ----------
    model : GAPRegressor
        Settings of the model (fitted or not; it is cloned).
    frames : sequence of ase.Atoms
        Initial labelled training structures.
    reference : ase Calculator
        Labels new structures (DFT or any ASE calculator).
    starts : ase.Atoms or sequence of ase.Atoms
        Initial structures of the MD runs.
    n_iterations : int, default=5
        Largest number of iterations (rounds of MD, selection, labelling and refit).
    n_select : int, default=4
        Structures labelled per iteration.
    md_steps, md_interval : int, default=200, 10
        MD steps per run and steps between candidate snapshots.
    temperature : float or sequence of float, default=300.0
        Kelvin; one MD run per start and temperature.
    timestep : float, default=1.0
        MD time step in fs.
    score : {"forces", "energy", "energies"}, default="forces"
        See :func:`uncertainty_scores`.
    threshold : float, optional
        Convergence: stop when no candidate scores above it; also the eligibility
        threshold of :func:`select_structures`.
    md_max_force_std : float, optional
        Stop each MD run at the first snapshot more uncertain than this (eV/A), see
        :func:`run_md`.
    random_state : int or None
        Seeds the MD (and ``selection="random"``).
    callback : callable, optional
        ``callback(iteration, model)`` after each iteration, with the refitted model.
    driver : {"md", "metad", "uncertainty"}, default="md"
        The dynamics, see :func:`driver_calculator`.
    driver_options : dict, optional
        Keyword arguments of :class:`DescriptorMetadynamics` (``height``, ``width``,
        ``stride``, ``bias_temperature``, ``collective_variable``) or
        :class:`UncertaintyBias` (``strength``, ``variance_scale``); a fresh bias per run.
    selection : {"diverse", "top", "random", "per_run"}, default="diverse"
        :func:`select_structures` with or without diversity, random candidates (a
        baseline), or ``"per_run"``: uncertain and diverse within each MD run, the labels
        shared out evenly among the runs (:func:`select_per_run`), so that the run
        furthest from the data (e.g. a strongly expanded start) does not take them all.
    workdir : str or path, optional
        Directory of ``labelled.xyz``, ``pending.xyz``, ``failed.xyz``, ``model.gapy``
        (the model of the last refit, which a resume reuses) and ``state.json``; resumed
        when it holds a run with the same settings, refused when it holds another run.
    reference_timeout : float, optional
        Seconds per reference calculation; the calculation runs in a child process that
        is killed when the time is up (see :func:`reference_results`).
    test_frames : sequence of ase.Atoms, optional
        Labelled structures: errors of each model are recorded in the history.
    progress : bool, default=False
        Progress bars.
    refit : {"fit", "evidence", "recommend"}, default="fit"
        How each iteration refits the model: ``"fit"`` with its settings as given;
        ``"evidence"`` with its deltas and noise sigmas chosen again by
        :meth:`GAPRegressor.maximize_evidence` (from the given values) on the grown
        training set, so that structures far from the data (large forces) do not have to
        be followed to a sigma set for the start (``docs/sampling.md``); ``"recommend"``
        with every setting chosen again on the grown training set, as ``gapy fit`` does
        (:func:`gapy.recommend`, then the evidence; ``model`` gives only the label keys,
        ``random_state``, ``n_jobs`` and ``verbose``).
    overrides : dict, optional
        With ``refit="recommend"``: ``set_params`` values that replace the recommended
        ones (``{"descriptor__r_cut": 4.5}``), as ``gapy.recommend(overrides=...)``.
    retry_failed : bool, default=False
        On resuming a ``workdir``, first run the reference again on every structure whose
        calculation failed: those that succeed join the training set, the others stay
        recorded as failed (``attempts`` counts the tries).

    Returns
    -------
    ActiveLearningResult
        The model refitted on the initial and every labelled structure, the training
        set, the history of the iterations, whether the run converged, the failed
        reference calculations, and with ``test_frames`` the final model's errors.

    Raises
    ------
    gapy.GapyError
        The work directory holds another run (the message names the settings that
        differ) or is damaged, or every MD run stopped before its first snapshot.
    TypeError
        A numeric parameter is not a number, or ``driver_options`` that the driver does
        not take (see :func:`driver_calculator`).
    ValueError
        No ``starts`` or no temperature, a start of fewer than 2 atoms (a
        :class:`gapy.StructureError`), a value out of range, or an unknown ``score``,
        ``driver`` or ``selection``.

    See Also
    --------
    history_rows, write_history_csv : The history as a table.
    workdir_history : The history of a run in progress.

    Examples
    --------
    >>> import tempfile
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.sampling import active_learning, label_structures
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> frames = label_structures([atoms], EMT())
    >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     result = active_learning(model, frames, EMT(), bulk("Cu", cubic=True), n_iterations=2,
    ...                              n_select=1, md_steps=4, md_interval=2, random_state=0,
    ...                              workdir=tmp, test_frames=frames)
    >>> len(result.frames), [entry.n_train for entry in result.history], result.failures
    (3, [1, 2], [])
    >>> result.test_force_rmse is not None
    True
    """
    starts = [starts] if isinstance(starts, Atoms) else list(starts)
    if not starts:
        raise ValueError("starts: give at least one initial structure for the MD")
    for name, value in (("n_iterations", n_iterations), ("n_select", n_select),
                        ("md_steps", md_steps), ("md_interval", md_interval)):
        check_integer(name, value, 1)
    _check_interval("md_interval", md_interval, "md_steps", md_steps)
    temperatures = [temperature] if np.ndim(temperature) == 0 else list(temperature)
    if not temperatures:
        raise ValueError("temperature: give at least one temperature")
    for value in temperatures:
        check_number("temperature", value, 0.0, low_inclusive=True)
    check_number("timestep", timestep, 0.0)
    check_choice("score", score, SCORES)
    check_number("threshold", threshold, allow_none=True)
    check_number("md_max_force_std", md_max_force_std, 0.0, allow_none=True)
    check_number("reference_timeout", reference_timeout, 0.0, allow_none=True)
    check_driver_options(driver, driver_options)
    check_choice("selection", selection, SELECTIONS)
    check_choice("refit", refit, REFITS)
    if overrides is not None and not isinstance(overrides, dict):
        raise TypeError(f"overrides must be a dict of set_params values, got {type(overrides).__name__}")
    if retry_failed and workdir is None:
        raise ValueError("retry_failed tries again the failed reference calculations of a workdir: give workdir")
    if overrides and refit != "recommend":
        raise ValueError(f"overrides apply to refit='recommend' only, got refit={refit!r}: set the model's "
                         "parameters instead")
    initial = through_extxyz(list(frames))
    if not isinstance(reference, BaseCalculator):
        raise TypeError(f"reference must be an ASE calculator, got {type(reference).__name__} {reference!r}"
                        + (" (for a name such as 'emt' use gapy.sampling.reference_calculator)"
                           if isinstance(reference, str) else ""))
    known = {int(z) for atoms in initial for z in atoms.numbers}
    for k, atoms in enumerate(starts):
        _check_start(f"starts[{k}]", atoms)
        unknown = sorted({str(s) for s, z in zip(atoms.get_chemical_symbols(), atoms.numbers) if z not in known})
        if unknown:
            raise ValueError(f"starts[{k}] ({atoms.get_chemical_formula()}) has species {unknown} that no "
                             "training structure has: the model would know nothing of them; add labelled "
                             "structures with them to frames")
    if test_frames is not None:
        test_frames = list(test_frames)
        _test_set_labels(model, test_frames)  # (now, not after the first MD)
    settings = _settings(model, initial, starts, reference, temperatures=temperatures, n_select=n_select,
                         md_steps=md_steps, md_interval=md_interval, timestep=timestep, score=score,
                         threshold=threshold, md_max_force_std=md_max_force_std, random_state=random_state,
                         driver=driver, driver_options=driver_options, selection=selection, refit=refit,
                         overrides=overrides)
    digests_v1 = {"training_set": frames_digest_v1(initial), "starts": frames_digest_v1(starts)}  # (older workdirs)
    store = Workdir(workdir, settings, digests_v1) if workdir is not None else None
    with store.locked() if store is not None else contextlib.nullcontext():  # (one run at a time)
        rng = np.random.default_rng(random_state)
        state = store.load() if store is not None else None
        if state is None:
            state = {"iteration": 0, "phase": "md", "converged": False, "history": [], "failures": [],
                     "current": None, "rng": rng.bit_generator.state}
            if store is not None:
                store.save(state)
            labelled, unrecorded = [], []
        else:
            try:
                rng.bit_generator.state = state["rng"]
            except (TypeError, ValueError, KeyError) as error:
                raise GapyError(f"workdir {workdir}: state.json: field 'rng' is not a random generator's state "
                                f"({type(error).__name__}: {error}); restore it, or use another workdir with "
                                "labelled.xyz added to the training structures") from None
            labelled = store.read_labelled()
            store.check_labelled(state, labelled)
            unrecorded = _unrecorded_failures(store, state["failures"], labelled)
            logger.info("workdir %s: resuming at iteration %d (%s) with %d labelled structures and %d failures",
                        workdir, state["iteration"], state["phase"], len(labelled), len(state["failures"]))
        history = [Iteration.from_dict(entry) for entry in state["history"]]
        failures = list(state["failures"]) + unrecorded

        def save(**changes) -> None:
            state.update(changes)
            state["history"] = [entry.to_dict() for entry in history]
            state["failures"] = failures
            if store is not None:
                store.save(state)

        label_keys = {"energy": model.energy_key, "forces": model.forces_key, "stress": model.stress_key}

        def label(atoms: Atoms, iteration_index: int, attempts: int = 1) -> float:
            """Label ``atoms`` (or record its failure), durably; returns the seconds it took."""
            name, clock = atoms.info["al_id"], time.perf_counter()
            try:
                results = reference_results(atoms, reference, reference_timeout)
                try:
                    (new,) = through_extxyz([_labelled_copy(atoms, results, ACTIVE_LEARNING_CONFIG_TYPE, label_keys)])
                except Exception as error:  # (labels an extended XYZ file cannot hold)
                    raise ReferenceFailure(f"its labels cannot be stored: {type(error).__name__}: {error}",
                                           "exception") from error
            except ReferenceFailure as error:
                logger.warning("active learning: structure %s (%s): %s; recorded as failed, going on",
                               name, atoms.get_chemical_formula(), error)
                if store is not None:
                    failed = atoms.copy()
                    failed.info["al_failure"] = error.kind
                    store.append_failed(failed)  # (the structure first, then the record)
                failures.append({"id": name, "iteration": iteration_index, "kind": error.kind,
                                 "message": str(error), "attempts": attempts})
                return time.perf_counter() - clock
            if store is not None:
                store.append_labelled(new)  # first the label, durable; then the bookkeeping
            labelled.append(new)
            return time.perf_counter() - clock

        def refitted(train: List[Atoms]):
            """The model fitted on ``train``: the one the workdir kept if it was fitted on the same
            structures, else a refit, which the workdir then keeps."""
            if store is not None:
                kept = store.load_model(state, labelled)
                if kept is not None:
                    return kept
            fresh = _refit(model, train, refit, overrides)
            if store is not None:
                store.save_model(fresh)  # (the model first, then what it was fitted on)
                save(model_labelled=len(labelled), model_labelled_digest=frames_digest(labelled))
            return fresh

        if retry_failed and failures:
            _retry_failures(store, failures, labelled, label, save)
        train, fitted = initial + labelled, None
        while state["iteration"] < n_iterations and not state["converged"]:
            iteration_index = state["iteration"]
            if state["phase"] == "md":
                clock = time.perf_counter()
                if fitted is None:  # (a resumed labelling phase needs no model until its refit)
                    fitted = refitted(train)
                current = _explore(fitted, starts, temperatures, rng, n_select=n_select, md_steps=md_steps,
                                   md_interval=md_interval, timestep=timestep, score=score, threshold=threshold,
                                   md_max_force_std=md_max_force_std, driver=driver, driver_options=driver_options,
                                   selection=selection, test_frames=test_frames, train=train,
                                   iteration_index=iteration_index, progress=progress)
                iteration, pending = current
                iteration.gapy_seconds += time.perf_counter() - clock
                if not len(pending):
                    history.append(iteration)
                    save(converged=True, phase="done", rng=rng.bit_generator.state, current=None)
                    if callback is not None:
                        callback(iteration, fitted)
                    break
                if store is not None:
                    store.write_pending(pending)
                save(phase="label", current=iteration.to_dict(), rng=rng.bit_generator.state)
            else:
                pending = store.read_pending()
                iteration = Iteration.from_dict(state["current"])
            batch = {atoms.info["al_id"] for atoms in pending}
            done = {atoms.info["al_id"] for atoms in labelled} | {failure["id"] for failure in failures}
            bar = tqdm(pending, desc=f"iteration {iteration_index}: reference", unit="structure", disable=not progress)
            for atoms in bar:
                name = atoms.info["al_id"]
                if name in done:
                    continue
                iteration.reference_seconds += label(atoms, iteration_index)
                save(current=iteration.to_dict())
            iteration.n_labelled = sum(atoms.info["al_id"] in batch for atoms in labelled)
            iteration.n_failed = sum(failure["id"] in batch for failure in failures)
            clock = time.perf_counter()
            train = initial + labelled
            fitted = refitted(train)
            iteration.gapy_seconds += time.perf_counter() - clock
            history.append(iteration)
            save(iteration=iteration_index + 1, phase="md", current=None, rng=rng.bit_generator.state)
            if callback is not None:
                callback(iteration, fitted)

        if fitted is None:
            fitted = refitted(train)
        result = ActiveLearningResult(model=fitted, frames=initial + labelled, history=history,
                                      converged=bool(state["converged"]), failures=failures)
        if test_frames:
            result.test_energy_rmse, result.test_force_rmse = errors_on(fitted, test_frames)
        return result


def _explore(model, starts, temperatures, rng, *, n_select, md_steps, md_interval, timestep, score, threshold,
             md_max_force_std, driver, driver_options, selection, test_frames, train, iteration_index, progress):
    """Dynamics from every start at every temperature, scores and the choice to label."""
    candidates, stopped, run_of = [], 0, []
    n_train = len(train)
    reference_frames = train[::max(1, -(-n_train // REFERENCE_FRAMES))]  # (no draw: the seed's stream stays)
    runs = [(start, temperature) for start in starts for temperature in temperatures]
    for k, (start, temperature) in enumerate(tqdm(runs, desc=f"iteration {iteration_index}: {driver}", unit="run",
                                                  disable=not progress)):
        calculator = driver_calculator(driver, model, driver_options, reference_frames)
        snapshots, was_stopped = run_md(calculator, start, md_steps, md_interval, temperature, timestep,
                                        random_state=rng, max_force_std=md_max_force_std)
        candidates += snapshots
        run_of += [k] * len(snapshots)
        stopped += was_stopped
    if not candidates:
        raise GapyError("active learning: every MD run stopped before its first snapshot; "
                        "start from better structures, a smaller timestep or a weaker bias")
    if selection == "per_run":
        scores, indices = select_per_run(model, candidates, np.array(run_of), n_select, score=score,
                                         threshold=threshold)
    elif selection == "random":
        chosen = select_structures(model, candidates, n_select, score=score, threshold=threshold, diverse=False)
        scores = chosen.scores
        eligible = np.flatnonzero(scores > (threshold if threshold is not None else -np.inf))
        indices = (rng.choice(eligible, min(n_select, len(eligible)), replace=False) if len(eligible)
                   else np.zeros(0, dtype=int))
    else:
        chosen = select_structures(model, candidates, n_select, score=score, threshold=threshold,
                                   diverse=selection == "diverse")
        scores, indices = chosen.scores, chosen.indices
    energy_rmse = force_rmse = None
    if test_frames:
        energy_rmse, force_rmse = errors_on(model, test_frames)
    iteration = Iteration(
        n_train=n_train, n_candidates=len(candidates), max_score=float(scores.max()),
        median_score=float(np.median(scores)), selected_scores=scores[indices], md_stopped=stopped,
        test_energy_rmse=energy_rmse, test_force_rmse=force_rmse,
    )
    pending = through_extxyz([candidates[k] for k in indices])
    for atoms, k in zip(pending, indices):
        atoms.info["al_id"] = f"{iteration_index}:{int(k)}"
    return iteration, pending


#: Columns of :func:`history_rows` (and of the CSV log of ``gapy learn``).
HISTORY_COLUMNS = ("iteration", "n_train", "n_candidates", "max_score", "median_score", "n_selected", "n_labelled",
                   "n_failed", "md_stopped", "test_energy_rmse", "test_force_rmse", "reference_seconds",
                   "gapy_seconds")


def history_rows(history: Sequence[Iteration], final: Optional[ActiveLearningResult] = None) -> List[dict]:
    """One row per iteration (columns :data:`HISTORY_COLUMNS`), plus one for the final model.

    Parameters
    ----------
    history : sequence of Iteration
        E.g. :attr:`ActiveLearningResult.history` or :func:`workdir_history`.
    final : ActiveLearningResult, optional
        Adds a row ``iteration="final"`` with its training-set size and test errors.

    Returns
    -------
    list of dict
        Energies per atom in eV/atom, forces in eV/A, times in seconds; ``None`` where
        there is no value.

    See Also
    --------
    write_history_csv : Writes the rows.
    gapy.plots.learning_curve_plot : Plots them.

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.sampling import Iteration, history_rows
    >>> history = [Iteration(n_train=10, n_candidates=40, max_score=0.8, median_score=0.2,
    ...                      selected_scores=np.array([0.8, 0.5]), md_stopped=0, n_labelled=2)]
    >>> (row,) = history_rows(history)
    >>> row["iteration"], row["n_selected"], row["test_force_rmse"]
    (0, 2, None)
    """
    rows = []
    for k, entry in enumerate(history):
        rows.append({
            "iteration": k, "n_train": entry.n_train, "n_candidates": entry.n_candidates,
            "max_score": entry.max_score, "median_score": entry.median_score,
            "n_selected": len(entry.selected_scores), "n_labelled": entry.n_labelled, "n_failed": entry.n_failed,
            "md_stopped": entry.md_stopped, "test_energy_rmse": entry.test_energy_rmse,
            "test_force_rmse": entry.test_force_rmse, "reference_seconds": entry.reference_seconds,
            "gapy_seconds": entry.gapy_seconds,
        })
    if final is not None:
        rows.append({**dict.fromkeys(HISTORY_COLUMNS), "iteration": "final", "n_train": len(final.frames),
                     "test_energy_rmse": final.test_energy_rmse, "test_force_rmse": final.test_force_rmse})
    return rows


def write_history_csv(rows: Sequence[dict], path: Union[str, os.PathLike]) -> None:
    """Write :func:`history_rows` as CSV (empty cells for missing values).

    Parameters
    ----------
    rows : sequence of dict
        From :func:`history_rows`; the columns are :data:`HISTORY_COLUMNS` (other keys
        are ignored, missing ones left empty).
    path : str or path-like
        CSV file to write (overwritten).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from gapy.sampling import Iteration, history_rows, write_history_csv
    >>> history = [Iteration(n_train=10, n_candidates=40, max_score=0.8, median_score=0.2,
    ...                      selected_scores=np.array([0.8, 0.5]), md_stopped=0, n_labelled=2)]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_history_csv(history_rows(history), Path(tmp) / "history.csv")
    ...     lines = (Path(tmp) / "history.csv").read_text().splitlines()
    >>> lines[0].split(",")[:3], lines[1].split(",")[:3], len(lines)
    (['iteration', 'n_train', 'n_candidates'], ['0', '10', '40'], 2)
    """
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row[key] for key in HISTORY_COLUMNS})


def workdir_history(workdir: Union[str, os.PathLike]) -> List[Iteration]:
    """The iterations recorded in an :func:`active_learning` work directory so far.

    Reads ``state.json`` only (no settings are checked): works while the run is going
    on, or after it was killed.

    Parameters
    ----------
    workdir : str or path-like
        The ``workdir`` of :func:`active_learning`.

    Returns
    -------
    list of Iteration
        The finished iterations, in order (the one being labelled is not included).

    Raises
    ------
    gapy.GapyError
        No ``state.json``, or one that cannot be read or is not an active-learning state.

    Examples
    --------
    >>> import tempfile
    >>> from gapy.sampling import active_learning, label_structures, workdir_history
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy import GAPRegressor, SOAP
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> frames = label_structures([atoms], EMT())
    >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(frames)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     result = active_learning(model, frames, EMT(), bulk("Cu", cubic=True), n_iterations=1,
    ...                              n_select=1, md_steps=4, md_interval=2, random_state=0, workdir=tmp)
    ...     history = workdir_history(tmp)
    >>> len(history), history[0].n_train, history[0].n_labelled
    (1, 1, 1)
    """
    from ._workdir import read_state_file

    return [Iteration.from_dict(entry) for entry in read_state_file(workdir)["history"]]


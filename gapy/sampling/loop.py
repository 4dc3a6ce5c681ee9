"""The active-learning loop: molecular dynamics with the model (plain or biased),
selection, labelling with any ASE calculator, refit; with a work directory every
reference result is on disk as soon as it exists, and a killed run resumes."""

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator, Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from sklearn.base import clone
from tqdm.auto import tqdm

from .._validation import check_choice, check_integer, check_number
from ..calculator import GAPCalculator
from ..exceptions import GapyError, StructureError
from ..recommend import recommend
from ..labels import label_keys
from ..structures import closest_covalent_pair, structure_name
from ._workdir import Workdir, frames_digest, through_extxyz
from .bias import DescriptorMetadynamics, UncertaintyBias
from .select import SCORES, select_per_run, select_structures

logger = logging.getLogger(__name__)

#: ``atoms.info["config_type"]`` of structures labelled by :func:`active_learning`.
ACTIVE_LEARNING_CONFIG_TYPE = "active_learning"


class ReferenceFailure(GapyError):
    """A reference calculation raised, returned non-finite values or timed out.

    A :class:`gapy.GapyError`. Raised by :func:`reference_results` and
    :func:`label_structures`; :func:`active_learning` records it in
    :attr:`ActiveLearningResult.failures` and goes on.

    Parameters
    ----------
    message : str
        What failed (the error's ``str``).
    kind : {"exception", "non-finite", "timeout", "died", "moved"}
        How it failed: the calculator raised, returned NaN or infinity, ran past its
        timeout, its child process died, or it moved the atoms or the cell (a relaxation
        or MD instead of a single point: its labels belong to other positions).

    Attributes
    ----------
    kind : {"exception", "non-finite", "timeout", "died", "moved"}
        As given.

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> from ase.calculators.singlepoint import SinglePointCalculator
    >>> from gapy.sampling import ReferenceFailure, reference_results
    >>> atoms = bulk("Cu", cubic=True)
    >>> broken = SinglePointCalculator(atoms, energy=np.nan, forces=np.zeros((4, 3)), stress=np.zeros(6))
    >>> try:
    ...     reference_results(atoms, broken)
    ... except ReferenceFailure as error:
    ...     print(error.kind, "|", error)
    non-finite | reference returned non-finite energy
    """

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def reference_results(atoms: Atoms, reference: BaseCalculator, timeout: Optional[float] = None) -> dict:
    """Energy, forces and (periodic) stress of ``atoms`` by ``reference``, checked finite.

    Parameters
    ----------
    atoms : ase.Atoms
        Not modified.
    reference : ase Calculator
        Any ASE calculator; attached to a copy of ``atoms``.
    timeout : float, optional
        Seconds. With a timeout the calculation runs in a forked child process (in its
        own process group), killed with everything it started when the time is up; the
        calculator's in-memory state then does not come back to this process (files it
        writes do). Without one it runs here and may hang. Needs ``fork`` (Linux, macOS).

    Returns
    -------
    dict
        ``energy`` (eV), ``forces`` (eV/A), ``stress`` (eV/A^3, periodic cells only,
        when the calculator gives one: a calculator without stress still labels energy
        and forces).

    Raises
    ------
    ReferenceFailure
        The calculator raised (``kind="exception"``), returned NaN or infinity
        (``"non-finite"``), ran past ``timeout`` (``"timeout"``), its process died
        (``"died"``), or it moved the atoms or changed the cell (``"moved"``).
    gapy.GapyError
        ``timeout`` is given on a system without the ``fork`` start method.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy.sampling import reference_results
    >>> results = reference_results(bulk("Cu", cubic=True), EMT())
    >>> sorted(results), results["forces"].shape, results["stress"].shape
    (['energy', 'forces', 'stress'], (4, 3), (6,))
    """
    if timeout is None:
        try:
            results = _compute_reference(atoms, reference)
        except ReferenceFailure:
            raise
        except Exception as error:
            raise ReferenceFailure(f"reference calculation failed: {type(error).__name__}: {error}",
                                   "exception") from error
    else:
        results = _compute_reference_in_child(atoms, reference, timeout)
    bad = [key for key, value in results.items() if not np.all(np.isfinite(value))]
    if bad:
        raise ReferenceFailure(f"reference returned non-finite {', '.join(bad)}", "non-finite")
    return results


#: Largest displacement (A) of an atom, and relative change of the cell, by a reference
#: calculation that still counts as a single point (file round trips, wrapping aside).
MOVED_TOLERANCE = 1e-4


def _compute_reference(atoms: Atoms, reference: BaseCalculator) -> dict:
    copy = atoms.copy()
    copy.calc = reference
    results = {"energy": float(copy.get_potential_energy()), "forces": np.array(copy.get_forces(), dtype=float)}
    if copy.pbc.all():
        try:
            stress = copy.get_stress()
        except NotImplementedError:  # (ASE's PropertyNotImplementedError): energy and forces are still labels
            stress = None
        if stress is not None:
            results["stress"] = np.array(stress, dtype=float)
    _check_not_moved(atoms, copy)
    return results


def _check_not_moved(before: Atoms, after: Atoms) -> None:
    """Refuse a reference that relaxed or moved ``after`` (periodic wrapping allowed)."""
    scale = max(1.0, float(np.abs(before.cell.array).max()))
    if len(after) != len(before) or np.abs(after.cell.array - before.cell.array).max() > MOVED_TOLERANCE * scale:
        raise ReferenceFailure("the reference changed the cell or the number of atoms: it must be a single-point "
                               "calculation (no relaxation or MD), its labels belong to another structure", "moved")
    displacement = after.positions - before.positions
    if before.pbc.any() and before.cell.rank == 3:
        fractional = displacement @ np.linalg.inv(before.cell.array)
        fractional[:, before.pbc] -= np.round(fractional[:, before.pbc])
        displacement = fractional @ before.cell.array
    largest = float(np.linalg.norm(displacement, axis=1).max()) if len(before) else 0.0
    if largest > MOVED_TOLERANCE:
        raise ReferenceFailure(f"the reference moved the atoms (by up to {largest:.3g} A): it must be a "
                               "single-point calculation (no relaxation or MD), its labels belong to other "
                               "positions", "moved")


def _reference_child(atoms, reference, connection) -> None:  # pragma: no cover (runs in the child)
    os.setpgid(0, 0)  # its own process group: a timeout kills what it started too
    try:
        message = ("ok", _compute_reference(atoms, reference))
    except ReferenceFailure as error:
        message = ("failure", (str(error), error.kind))
    except BaseException as error:
        message = ("error", f"{type(error).__name__}: {error}")
    connection.send(message)
    connection.close()


def _compute_reference_in_child(atoms: Atoms, reference: BaseCalculator, timeout: float) -> dict:
    try:
        context = multiprocessing.get_context("fork")
    except ValueError:
        raise GapyError("reference_timeout needs the 'fork' start method (Linux, macOS); "
                        "leave it unset on this system") from None
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_reference_child, args=(atoms, reference, sender))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            for kill in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
                try:
                    kill()
                except (ProcessLookupError, PermissionError):
                    pass
            raise ReferenceFailure(f"reference calculation timed out after {timeout:g} s (killed)", "timeout")
        try:
            status, payload = receiver.recv()
        except EOFError:
            process.join()
            raise ReferenceFailure(f"reference process died (exit code {process.exitcode})", "died") from None
        if status == "failure":
            raise ReferenceFailure(*payload)
        if status != "ok":
            raise ReferenceFailure(f"reference calculation failed: {payload}", "exception")
        return payload
    finally:
        receiver.close()
        process.join(5)


def label_structures(frames: Sequence[Atoms], reference: Calculator,
                     config_type: Optional[str] = ACTIVE_LEARNING_CONFIG_TYPE,
                     reference_timeout: Optional[float] = None) -> List[Atoms]:
    """Copies of ``frames`` labelled with energy, forces and (periodic) stress.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        Structures to label (not modified).
    reference : ase Calculator
        Any ASE calculator (DFT, a classical potential, ...); it is attached to each copy
        in turn.
    config_type : str or None, default="active_learning"
        Written to ``atoms.info["config_type"]`` of the copies (``None``: keep).
    reference_timeout : float, optional
        Seconds per structure, see :func:`reference_results`.

    Returns
    -------
    list of ase.Atoms
        With the labels on a ``SinglePointCalculator``, as ``ase.io`` writes them.

    Raises
    ------
    ReferenceFailure
        A calculation failed, timed out or gave non-finite values (the structure is
        named); :func:`active_learning` records such failures and goes on instead.
    TypeError, ValueError
        ``reference_timeout`` is not a positive number.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy.sampling import label_structures
    >>> frames = [bulk("Cu", cubic=True), bulk("Cu", a=3.7)]
    >>> labelled = label_structures(frames, EMT())
    >>> [len(atoms.get_forces()) for atoms in labelled], labelled[0].info["config_type"]
    ([4, 1], 'active_learning')
    >>> frames[0].calc is None  # the frames themselves are not modified
    True
    """
    check_number("reference_timeout", reference_timeout, 0.0, allow_none=True)
    labelled = []
    for k, atoms in enumerate(frames):
        try:
            results = reference_results(atoms, reference, reference_timeout)
        except ReferenceFailure as error:
            raise ReferenceFailure(f"{structure_name(atoms, k)}: {error}", error.kind) from error
        labelled.append(_labelled_copy(atoms, results, config_type))
    return labelled


def _labelled_copy(atoms: Atoms, results: dict, config_type: Optional[str], keys: Optional[dict] = None) -> Atoms:
    """A copy with ``results`` on a calculator, or under ``keys`` (``{"energy": "REF_energy", ...}``, a
    model's label keys) in ``info`` / ``arrays`` when they are not ASE's names, so that the model reads them."""
    copy = atoms.copy()
    keys = {name: (keys or {}).get(name, name) for name in results}
    if all(key == name for name, key in keys.items()):
        copy.calc = SinglePointCalculator(copy, **results)
    else:
        for name, value in results.items():
            (copy.arrays if name == "forces" else copy.info)[keys[name]] = value
    if config_type is not None:
        copy.info["config_type"] = config_type
    return copy


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


def run_md(model, start: Atoms, steps: int, interval: int, temperature: float,
           timestep: float = 1.0, friction: float = 0.02, random_state=None,
           max_force_std: Optional[float] = None, min_distance_factor: float = 0.5) -> tuple:
    """Langevin dynamics with the model (or any ASE calculator); snapshots every ``interval`` steps.

    A trajectory that reaches an unphysical geometry (two atoms closer than
    ``min_distance_factor`` times the sum of their covalent radii, non-finite
    positions), as a poor model or too long a time step can drive it to, is stopped
    there; the snapshots before it are kept, that one is not.

    Parameters
    ----------
    model : GAPRegressor or ase Calculator
        A fitted model, a calculator wrapping one (:class:`~gapy.sampling.DescriptorMetadynamics`,
        :class:`~gapy.sampling.UncertaintyBias`), or any other calculator such as the
        reference itself (for test sets).
    start : ase.Atoms
        Initial structure (not modified).
    steps : int
        Number of MD steps.
    interval : int
        Steps between snapshots.
    temperature : float
        Thermostat temperature in K; initial velocities are drawn at this temperature
        (without centre-of-mass motion, which stays fixed).
    timestep : float, default=1.0
        Time step in fs.
    friction : float, default=0.02
        Langevin friction in 1/fs.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the initial velocities and of the Langevin noise.
    max_force_std : float, optional
        With a model (or a calculator with ``forces_std``): stop at the first snapshot
        whose largest force standard deviation (eV/A) exceeds this, as on-the-fly
        learning does. The trajectory has left what the model knows; later frames would
        only drift further. That snapshot is kept.
    min_distance_factor : float, default=0.5
        Stop at the first snapshot with two atoms closer than this times the sum of their
        covalent radii (:func:`gapy.structures.closest_covalent_pair`); 0 turns it off.

    Returns
    -------
    snapshots : list of ase.Atoms
        Positions, cell and config_type only (no labels, no calculator), after
        ``interval``, ``2 * interval``, ... steps (the start is not included).
    stopped : bool
        Whether the trajectory was stopped early.

    Raises
    ------
    TypeError
        A numeric parameter is not a number.
    ValueError
        ``steps`` or ``interval`` below 1, ``interval`` above ``steps`` (no snapshot), a
        negative ``temperature`` or ``friction``, a ``timestep`` or ``max_force_std``
        that is not positive, or a ``min_distance_factor`` outside [0, 1].

    Examples
    --------
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
    >>> from ase.build import bulk
    >>> from gapy.sampling import run_md
    >>> snapshots, stopped = run_md(model, bulk("Si", cubic=True), steps=20, interval=5,
    ...                             temperature=300.0, random_state=0)
    >>> len(snapshots), stopped
    (4, False)
    """
    check_integer("steps", steps, 1)
    check_integer("interval", interval, 1)
    _check_interval("interval", interval, "steps", steps)
    check_number("min_distance_factor", min_distance_factor, 0.0, 1.0, low_inclusive=True)
    check_number("temperature", temperature, 0.0, low_inclusive=True)
    check_number("timestep", timestep, 0.0)
    check_number("friction", friction, 0.0, low_inclusive=True)
    check_number("max_force_std", max_force_std, 0.0, allow_none=True)
    rng = np.random.default_rng(random_state)
    atoms = start.copy()
    atoms.calc = model if isinstance(model, Calculator) else GAPCalculator(model)
    _set_temperature(atoms, temperature, rng)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, timestep=timestep * units.fs, temperature_K=temperature,
                        friction=friction / units.fs, fixcm=False, rng=rng)
    snapshots = []
    # a model, or a calculator wrapping one (the biased calculators): they have forces_std
    watch = max_force_std is not None and "forces_std" in getattr(atoms.calc, "implemented_properties", ())

    def snapshot():
        too_close = closest_covalent_pair(atoms, min_distance_factor)
        if too_close is not None:
            raise StructureError(f"{too_close}: the trajectory left physical geometries (a poor model or too long "
                                 "a time step)")
        snapshots.append(_bare_copy(atoms))
        if watch and len(snapshots) > 1:
            std = atoms.calc.get_property("forces_std", atoms).max()
            if std > max_force_std:
                raise _TooUncertain(f"largest force std {std:.3g} eV/A > {max_force_std} eV/A")

    dynamics.attach(snapshot, interval=interval)
    try:
        dynamics.run(steps)
    except StructureError as error:
        logger.warning("MD stopped after %d steps: %s", dynamics.get_number_of_steps(), error)
        return snapshots[1:], True
    except _TooUncertain as error:
        logger.info("MD stopped after %d steps: %s", dynamics.get_number_of_steps(), error)
        return snapshots[1:], True
    return snapshots[1:], False  # the first snapshot is the start structure


def _check_interval(interval_name: str, interval: int, steps_name: str, steps: int) -> None:
    if interval > steps:
        raise ValueError(f"{interval_name}={interval} is larger than {steps_name}={steps}: the MD would take no "
                         f"snapshot; give {interval_name} <= {steps_name}")


class _TooUncertain(Exception):
    """Stops :func:`run_md` when the model's uncertainty passes ``max_force_std``."""


def _set_temperature(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature`` (K), without centre-of-mass motion."""
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * temperature))
    Stationary(atoms)


def _bare_copy(atoms: Atoms) -> Atoms:
    copy = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    copy.info.update({k: v for k, v in atoms.info.items() if k == "config_type"})
    return copy


#: MD drivers of :func:`active_learning`: plain Langevin dynamics with the model,
#: descriptor-space metadynamics, uncertainty-biased dynamics.
DRIVERS = ("md", "metad", "uncertainty")
#: Ways of choosing what to label among the candidates.
SELECTIONS = ("diverse", "top", "random", "per_run")
#: Training structures (evenly spaced) that set the scale of the uncertainty bias of a
#: model with extra terms (``UncertaintyBias(reference_frames=...)``).
REFERENCE_FRAMES = 20

#: How the loop refits its model: the settings as given, deltas and sigmas by the evidence,
#: or every setting chosen again from the grown training set (:func:`gapy.recommend`).
REFITS = ("fit", "evidence", "recommend")


def driver_calculator(driver: str, model, options: Optional[dict] = None,
                      reference_frames: Optional[Sequence[Atoms]] = None):
    """The calculator that runs the dynamics of ``driver`` with a fitted ``model``.

    ``"md"``: the model itself (:class:`gapy.GAPCalculator`); ``"metad"``:
    :class:`DescriptorMetadynamics` and ``"uncertainty"``: :class:`UncertaintyBias`,
    with ``options`` as keyword arguments.

    Parameters
    ----------
    driver : {"md", "metad", "uncertainty"}
        The dynamics (:data:`DRIVERS`).
    model : GAPRegressor or GAPCalculator
        A fitted model.
    options : dict, optional
        Keyword arguments of the bias calculator (none for ``"md"``).
    reference_frames : sequence of ase.Atoms, optional
        Training structures: the scale of the uncertainty bias of a model with extra
        terms (``UncertaintyBias(reference_frames=...)``) unless ``options`` set it.

    Returns
    -------
    GAPCalculator, DescriptorMetadynamics or UncertaintyBias
        A new calculator, to attach to the atoms of one trajectory.

    Raises
    ------
    TypeError
        Options for ``"md"``, an unknown option (the known ones are listed), a value of
        the wrong type, or ``model`` is not a fitted model (biased drivers).
    ValueError
        An unknown driver or a value out of range.
    sklearn.exceptions.NotFittedError
        ``model`` is not fitted (biased drivers).

    Examples
    --------
    >>> from gapy.sampling import label_structures
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.sampling import driver_calculator
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> frames = label_structures([atoms], EMT())
    >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(frames)
    >>> type(driver_calculator("md", model)).__name__
    'GAPCalculator'
    >>> calc = driver_calculator("metad", model, {"height": 0.01, "stride": 5})
    >>> type(calc).__name__, calc.parameters["height"], calc.parameters["width"]
    ('DescriptorMetadynamics', 0.01, 0.05)
    """
    check_driver_options(driver, options)
    if driver == "md":
        return GAPCalculator(model)
    if driver == "metad":
        return DescriptorMetadynamics(model, **(options or {}))
    options = dict(options or {})
    fitted = model.model if isinstance(model, GAPCalculator) else model
    if getattr(getattr(fitted, "gp_", None), "terms", ()) and options.get("variance_scale") is None:
        options["reference_frames"] = reference_frames
    return UncertaintyBias(model, **options)


def check_driver_options(driver: str, options: Optional[dict]) -> dict:
    """Check the ``driver_options`` of ``driver`` without a model; returns all settings.

    Raises
    ------
    TypeError
        Options for ``"md"``, an unknown option (the known ones are listed) or a value of
        the wrong type.
    ValueError
        An unknown driver or a value out of range.
    """
    check_choice("driver", driver, DRIVERS)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"driver_options must be a dict, got {type(options).__name__}")
    options = dict(options or {})
    if driver == "md":
        if options:
            raise TypeError(f"driver 'md' takes no driver_options, got {sorted(options)}")
        return options
    cls = DescriptorMetadynamics if driver == "metad" else UncertaintyBias
    return cls.check_parameters(options)


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
    params = {k: repr(v) for k, v in sorted(model.get_params(deep=False).items()) if k not in ("n_jobs", "verbose")}
    if isinstance(random_state, np.random.Generator):
        seed = repr(random_state.bit_generator.state)
    else:
        seed = random_state if random_state is None else int(random_state)
    return {
        "model": params, "training_set": frames_digest(frames), "n_initial": len(frames),
        "starts": frames_digest(starts), "temperatures": [float(t) for t in temperatures], "n_select": n_select,
        "md_steps": md_steps, "md_interval": md_interval, "timestep": float(timestep), "score": score,
        "threshold": threshold, "md_max_force_std": md_max_force_std, "random_state": seed, "driver": driver,
        "driver_options": {k: repr(v) for k, v in sorted((driver_options or {}).items())},
        "selection": selection,
        # what the labels mean: a resume with another functional, basis or k-points would mix labels
        "reference": {"calculator": f"{type(reference).__module__}.{type(reference).__qualname__}",
                      "parameters": {str(k): repr(v) for k, v in sorted(getattr(reference, "parameters", {}).items())}},
        **({} if refit == "fit" else {"refit": refit}),  # (work directories written before it resume)
        **({} if not overrides else {"overrides": {k: repr(v) for k, v in sorted(overrides.items())}}),
    }


def _refit(model, frames: List[Atoms], refit: str, overrides: Optional[dict] = None):
    """``clone(model)`` fitted on ``frames``, as ``refit`` says; with ``"recommend"`` the
    settings of :func:`gapy.recommend` on ``frames`` (``model`` gives the label keys, seed,
    threads and verbosity), then the evidence."""
    if refit != "recommend":
        fresh = clone(model)
        return fresh.maximize_evidence(frames) if refit == "evidence" else fresh.fit(frames)
    seed = model.random_state if isinstance(model.random_state, (int, np.integer)) else 0
    recommendation = recommend(frames, energy_key=model.energy_key, forces_key=model.forces_key,
                               stress_key=model.stress_key, virial_key=model.virial_key, overrides=overrides,
                               random_state=int(seed))
    fresh = recommendation.model.set_params(n_jobs=model.n_jobs, verbose=model.verbose)
    fresh.maximize_evidence(frames, fixed=recommendation.fixed)
    fresh.provenance_["recommended"] = recommendation.as_dict()  # as gapy fit records it
    return fresh


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
    the same as that of an uninterrupted run. See ``docs/sampling.md``.

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
        Directory of ``labelled.xyz``, ``pending.xyz`` and ``state.json``; resumed when
        it holds a run with the same settings, refused when it holds another run.
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
        No ``starts`` or no temperature, a value out of range, or an unknown ``score``,
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
    store = Workdir(workdir, settings) if workdir is not None else None
    with store.locked() if store is not None else contextlib.nullcontext():  # (one run at a time)
        rng = np.random.default_rng(random_state)
        state = store.load() if store is not None else None
        if state is None:
            state = {"iteration": 0, "phase": "md", "converged": False, "history": [], "failures": [],
                     "current": None, "rng": rng.bit_generator.state}
            if store is not None:
                store.save(state)
            labelled = []
        else:
            rng.bit_generator.state = state["rng"]
            labelled = store.read_labelled()
            logger.info("workdir %s: resuming at iteration %d (%s) with %d labelled structures and %d failures",
                        workdir, state["iteration"], state["phase"], len(labelled), len(state["failures"]))
        history = [Iteration.from_dict(entry) for entry in state["history"]]
        failures = list(state["failures"])

        def save(**changes) -> None:
            state.update(changes)
            state["history"] = [entry.to_dict() for entry in history]
            state["failures"] = failures
            if store is not None:
                store.save(state)

        train, fitted = initial + labelled, None
        label_keys = {"energy": model.energy_key, "forces": model.forces_key, "stress": model.stress_key}
        while state["iteration"] < n_iterations and not state["converged"]:
            iteration_index = state["iteration"]
            if state["phase"] == "md":
                clock = time.perf_counter()
                if fitted is None:  # (a resumed labelling phase needs no model until its refit)
                    fitted = _refit(model, train, refit, overrides)
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
                clock = time.perf_counter()
                try:
                    results = reference_results(atoms, reference, reference_timeout)
                except ReferenceFailure as error:
                    iteration.reference_seconds += time.perf_counter() - clock
                    logger.warning("active learning: structure %s (%s): %s; recorded as failed, going on",
                                   name, atoms.get_chemical_formula(), error)
                    failures.append({"id": name, "iteration": iteration_index, "kind": error.kind,
                                     "message": str(error)})
                    save(current=iteration.to_dict())
                    continue
                iteration.reference_seconds += time.perf_counter() - clock
                (new,) = through_extxyz([_labelled_copy(atoms, results, ACTIVE_LEARNING_CONFIG_TYPE, label_keys)])
                if store is not None:
                    store.append_labelled(new)  # first the label, durable; then the bookkeeping
                labelled.append(new)
                save(current=iteration.to_dict())
            iteration.n_labelled = sum(atoms.info["al_id"] in batch for atoms in labelled)
            iteration.n_failed = sum(failure["id"] in batch for failure in failures)
            clock = time.perf_counter()
            train = initial + labelled
            fitted = _refit(model, train, refit, overrides)
            iteration.gapy_seconds += time.perf_counter() - clock
            history.append(iteration)
            save(iteration=iteration_index + 1, phase="md", current=None, rng=rng.bit_generator.state)
            if callback is not None:
                callback(iteration, fitted)

        if fitted is None:
            fitted = _refit(model, train, refit, overrides)
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


def strained_copies(frames: Sequence[Atoms], strains: Sequence[float]) -> List[Atoms]:
    """Copies of the periodic ``frames`` under isotropic strains (cell and positions scaled by ``1 + s``).

    Structures not periodic in all directions are copied once, unstrained. Each copy
    gets ``info["strain"]``.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        Structures (not modified).
    strains : sequence of float
        Linear strains, e.g. ``[-0.02, 0.0, 0.02]``; each > -1.

    Returns
    -------
    list of ase.Atoms
        For each periodic structure, one copy per strain (in the order of ``strains``);
        for each other one, a single copy. No calculator (labels are dropped).

    Raises
    ------
    ValueError
        No strains, or a strain not above -1 (or not finite).
    TypeError
        A strain is not a number.

    Examples
    --------
    >>> from ase import Atoms
    >>> from ase.build import bulk
    >>> from gapy.sampling import strained_copies
    >>> copies = strained_copies([bulk("Cu", a=3.6), Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.3]])],
    ...                          [-0.02, 0.0, 0.02])
    >>> [atoms.info["strain"] for atoms in copies]
    [-0.02, 0.0, 0.02, 0.0]
    >>> round(float(copies[0].get_volume() / copies[1].get_volume()), 6)  # 0.98 ** 3
    0.941192
    """
    strains = list(strains)
    if not strains:
        raise ValueError("strains: give at least one strain (0.0 for the structures as they are)")
    for value in strains:
        check_number("strain", value, -1.0)
    out = []
    for atoms in frames:
        for strain in (strains if atoms.pbc.all() else [0.0]):
            copy = atoms.copy()
            copy.calc = None
            copy.set_cell(atoms.cell.array * (1.0 + strain), scale_atoms=True)
            copy.info["strain"] = float(strain)
            out.append(copy)
    return out


def reference_calculator(spec: str) -> BaseCalculator:
    """An ASE calculator from ``"emt"`` or ``"module:factory"`` (a function returning one).

    The ``reference`` of ``gapy learn``.

    Parameters
    ----------
    spec : str
        ``"emt"`` (any case) for ASE's :class:`~ase.calculators.emt.EMT`, or
        ``"module:factory"``: ``module`` is imported and ``factory()`` is called without
        arguments.

    Returns
    -------
    ase.calculators.calculator.BaseCalculator
        A new calculator.

    Raises
    ------
    TypeError
        ``spec`` is not a string.
    ValueError
        Malformed specification, a module that does not import, no such factory, or a
        factory that does not return an ASE calculator.

    Examples
    --------
    >>> from gapy.sampling import reference_calculator
    >>> type(reference_calculator("emt")).__name__
    'EMT'
    >>> type(reference_calculator("ase.calculators.lj:LennardJones")).__name__
    'LennardJones'
    >>> reference_calculator("emt:")
    Traceback (most recent call last):
        ...
    ValueError: reference 'emt:': give 'emt' or 'module:factory' (a function returning an ASE calculator)
    """
    if not isinstance(spec, str):
        raise TypeError(f"reference must be 'emt' or 'module:factory', got {spec!r}")
    if spec.lower() == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    import importlib

    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"reference {spec!r}: give 'emt' or 'module:factory' (a function returning an ASE "
                         "calculator)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"reference {spec!r}: cannot import {module_name!r} ({error})") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"reference {spec!r}: {module_name} has no callable {factory_name!r}")
    try:
        calculator = factory()
    except Exception as error:
        raise ValueError(f"reference {spec!r}: {factory_name}() raised {type(error).__name__}: {error}") from error
    if not isinstance(calculator, BaseCalculator):
        raise ValueError(f"reference {spec!r}: {factory_name}() returned {type(calculator).__name__}, not an ASE "
                         "calculator")
    return calculator

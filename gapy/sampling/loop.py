"""The active-learning loop: molecular dynamics with the model, selection, labelling with
any ASE calculator, refit."""

import logging
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from sklearn.base import clone

from .._validation import check_integer, check_number
from ..calculator import GAPCalculator
from ..exceptions import GapyError, StructureError
from ..structures import structure_name
from .select import select_structures

logger = logging.getLogger(__name__)

#: ``atoms.info["config_type"]`` of structures labelled by :func:`active_learning`.
ACTIVE_LEARNING_CONFIG_TYPE = "active_learning"


def label_structures(frames: Sequence[Atoms], reference: Calculator,
                     config_type: Optional[str] = ACTIVE_LEARNING_CONFIG_TYPE) -> List[Atoms]:
    """Copies of ``frames`` labelled with energy, forces and (periodic) stress.

    Parameters
    ----------
    frames : sequence of ase.Atoms
    reference : ase Calculator
        Any ASE calculator (DFT, a classical potential, ...); it is attached to each copy
        in turn.
    config_type : str or None, default="active_learning"
        Written to ``atoms.info["config_type"]`` of the copies (``None``: keep).

    Returns
    -------
    list of ase.Atoms
        With the labels on a ``SinglePointCalculator``, as ``ase.io`` writes them.
    """
    labelled = []
    for k, atoms in enumerate(frames):
        copy = atoms.copy()
        copy.calc = reference
        try:
            results = {"energy": copy.get_potential_energy(), "forces": copy.get_forces()}
            if copy.pbc.all():
                results["stress"] = copy.get_stress()
        except Exception as error:
            raise GapyError(f"{structure_name(atoms, k)}: reference calculation failed: {error}") from error
        copy.calc = SinglePointCalculator(copy, **results)
        if config_type is not None:
            copy.info["config_type"] = config_type
        labelled.append(copy)
    return labelled


@dataclass
class Iteration:
    """What one round of :func:`active_learning` saw and did.

    Attributes
    ----------
    n_train : int
        Training structures of the model that ran the dynamics.
    n_candidates : int
        MD frames scored.
    max_score, median_score : float
        Of the candidates (units of the score).
    selected_scores : ndarray
        Scores of the structures sent to the reference calculator.
    md_stopped : int
        Trajectories stopped early (atoms closer than physical, non-finite positions, or
        past ``md_max_force_std``).
    """

    n_train: int
    n_candidates: int
    max_score: float
    median_score: float
    selected_scores: np.ndarray
    md_stopped: int


@dataclass
class ActiveLearningResult:
    """Outcome of :func:`active_learning`.

    Attributes
    ----------
    model : GAPRegressor
        Fitted on ``frames``.
    frames : list of ase.Atoms
        The initial training structures followed by every labelled one.
    history : list of Iteration
    converged : bool
        True when the loop stopped because no candidate exceeded ``threshold``.
    """

    model: object
    frames: List[Atoms]
    history: List[Iteration] = field(default_factory=list)
    converged: bool = False


def run_md(model, start: Atoms, steps: int, interval: int, temperature: float,
           timestep: float = 1.0, friction: float = 0.02, random_state=None,
           max_force_std: Optional[float] = None) -> tuple:
    """Langevin dynamics with the model (or any ASE calculator); snapshots every ``interval`` steps.

    A trajectory that reaches an unphysical geometry (atoms closer than
    :data:`gapy.structures.MIN_DISTANCE`, non-finite positions), as a poor model can
    drive it to, is stopped there; the snapshots so far are kept.

    Parameters
    ----------
    model : GAPRegressor or ase Calculator
        A fitted model, a calculator wrapping one (:class:`~gapy.sampling.DescriptorMetadynamics`,
        :class:`~gapy.sampling.UncertaintyBias`), or any other calculator such as the
        reference itself (for test sets).
    start : ase.Atoms
        Initial structure (not modified).
    steps, interval : int
        Number of MD steps and steps between snapshots.
    temperature : float
        Kelvin; initial velocities are drawn at this temperature.
    timestep : float, default=1.0
        Femtoseconds.
    friction : float, default=0.02
        Langevin friction in 1/fs.
    random_state : int, Generator or None
    max_force_std : float, optional
        With a model (or a calculator with ``forces_std``): stop at the first snapshot whose largest force standard deviation
        (eV/A) exceeds this, as on-the-fly learning does. The trajectory has left what
        the model knows; later frames would only drift further. That snapshot is kept.

    Returns
    -------
    snapshots : list of ase.Atoms
        Positions, cell and config_type only (no labels, no calculator).
    stopped : bool
        Whether the trajectory was stopped early.
    """
    check_integer("steps", steps, 1)
    check_integer("interval", interval, 1)
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
    temperature: float = 300.0,
    timestep: float = 1.0,
    score: str = "forces",
    threshold: Optional[float] = None,
    md_max_force_std: Optional[float] = None,
    random_state=None,
    callback: Optional[Callable[[Iteration, object], None]] = None,
) -> ActiveLearningResult:
    """Grow a training set where the model is uncertain, and refit.

    Each iteration fits ``clone(model)`` on the training set, runs Langevin MD with it
    from every structure in ``starts``, scores the snapshots with the model's own
    uncertainty, labels the :func:`select_structures` choice with ``reference`` and adds
    them to the training set. The loop stops after ``n_iterations`` or when no snapshot
    scores above ``threshold``.

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
    n_select : int, default=4
        Structures labelled per iteration.
    md_steps, md_interval : int, default=200, 10
        MD steps per run and steps between candidate snapshots.
    temperature : float, default=300.0
        Kelvin.
    timestep : float, default=1.0
        Femtoseconds.
    score : {"forces", "energy", "energies"}, default="forces"
        See :func:`uncertainty_scores`.
    threshold : float, optional
        Convergence: stop when no candidate scores above it; also the eligibility
        threshold of :func:`select_structures`.
    md_max_force_std : float, optional
        Stop each MD run at the first snapshot more uncertain than this (eV/A), see
        :func:`run_md`.
    random_state : int or None
        Seeds the MD.
    callback : callable, optional
        ``callback(iteration, model)`` after each iteration (logging, checkpoints).

    Returns
    -------
    ActiveLearningResult
    """
    starts = [starts] if isinstance(starts, Atoms) else list(starts)
    if not starts:
        raise ValueError("starts: give at least one initial structure for the MD")
    for name, value in (("n_iterations", n_iterations), ("n_select", n_select),
                        ("md_steps", md_steps), ("md_interval", md_interval)):
        check_integer(name, value, 1)
    check_number("temperature", temperature, 0.0, low_inclusive=True)
    check_number("timestep", timestep, 0.0)
    check_number("threshold", threshold, allow_none=True)
    check_number("md_max_force_std", md_max_force_std, 0.0, allow_none=True)
    rng = np.random.default_rng(random_state)
    frames = list(frames)
    result = ActiveLearningResult(model=clone(model).fit(frames), frames=frames)
    for _ in range(n_iterations):
        candidates, stopped = [], 0
        for start in starts:
            snapshots, was_stopped = run_md(result.model, start, md_steps, md_interval, temperature,
                                            timestep, random_state=rng, max_force_std=md_max_force_std)
            candidates += snapshots
            stopped += was_stopped
        if not candidates:
            raise GapyError("active learning: every MD run stopped before its first snapshot; "
                            "start from better structures or a smaller timestep")
        selection = select_structures(result.model, candidates, n_select, score=score,
                                      threshold=threshold)
        scores = selection.scores
        iteration = Iteration(
            n_train=len(result.frames), n_candidates=len(candidates), max_score=float(scores.max()),
            median_score=float(np.median(scores)), selected_scores=scores[selection.indices],
            md_stopped=stopped,
        )
        result.history.append(iteration)
        if len(selection.indices) == 0:
            result.converged = True
            if callback is not None:
                callback(iteration, result.model)
            break
        new = label_structures([candidates[k] for k in selection.indices], reference)
        result.frames = result.frames + new
        result.model = clone(model).fit(result.frames)
        if callback is not None:
            callback(iteration, result.model)
    return result

"""Molecular dynamics for exploration: Langevin runs with a model (plain or biased) that
stop where the trajectory leaves physical geometries or what the model knows."""

import logging
from typing import List, Optional, Sequence

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

from .._validation import check_choice, check_integer, check_number
from ..calculator import GAPCalculator
from ..exceptions import StructureError
from ..structures import CLOSE_FACTOR, closest_covalent_pair
from .bias import DescriptorMetadynamics, UncertaintyBias

logger = logging.getLogger(__name__)


def run_md(model, start: Atoms, steps: int, interval: int, temperature: float,
           timestep: float = 1.0, friction: float = 0.02, random_state=None,
           max_force_std: Optional[float] = None, min_distance_factor: float = CLOSE_FACTOR) -> tuple:
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
    gapy.StructureError
        A ``start`` of fewer than 2 atoms (the centre of mass is fixed: it would not move).

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
    _check_start("start", start)
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
        logger.warning("MD of %s stopped after %d steps: %s", _run_name(start, temperature),
                       dynamics.get_number_of_steps(), error)
        return snapshots[1:], True
    except _TooUncertain as error:
        logger.info("MD of %s stopped after %d steps: %s", _run_name(start, temperature),
                    dynamics.get_number_of_steps(), error)
        return snapshots[1:], True
    return snapshots[1:], False  # the first snapshot is the start structure


def _run_name(start: Atoms, temperature: float) -> str:
    """The start (formula, strain) and temperature of a trajectory, for its log messages."""
    strain = f", strain {start.info['strain']:g}" if isinstance(start.info.get("strain"), (int, float)) else ""
    return f"{start.get_chemical_formula()}{strain} at {temperature:g} K"


def _check_start(name: str, start: Atoms) -> None:
    """Refuse a start of fewer than 2 atoms: with its centre of mass fixed the dynamics cannot move it."""
    if len(start) < 2:
        raise StructureError(f"{name} ({start.get_chemical_formula() or 'no atoms'}) has {len(start)} atom"
                         f"{'s' if len(start) != 1 else ''}: the MD keeps the centre of mass fixed, so it would not "
                         "move; give a start of at least 2 atoms")


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
#: Training structures (evenly spaced) that set the scale of the uncertainty bias of a
#: model with extra terms (``UncertaintyBias(reference_frames=...)``).
REFERENCE_FRAMES = 20


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


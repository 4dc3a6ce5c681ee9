"""Reference calculations: labels from any ASE calculator, checked, with a timeout.

A calculation that raises, returns NaN or infinity, runs past its timeout, dies or moves
the atoms is a :class:`ReferenceFailure` (the active-learning loop records it and goes on).
"""

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable, List, Optional, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from .._validation import check_number
from ..exceptions import GapyError
from ..structures import structure_name

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
        How it failed: the calculator raised (or returned a label of the wrong shape),
        returned NaN or infinity, ran past its
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
        writes do). The child ends too when this process is killed or interrupted (its
        result could go nowhere). Without one it runs here and may hang. Needs ``fork``
        (Linux, macOS).

    Returns
    -------
    dict
        ``energy`` (eV), ``forces`` (eV/A), ``stress`` (eV/A^3, periodic cells only,
        when the calculator gives one: a calculator without stress still labels energy
        and forces).

    Raises
    ------
    ReferenceFailure
        The calculator raised or returned a label of the wrong shape (forces not
        ``(n_atoms, 3)``, an energy not a number, a stress not 6 or 3x3 components:
        ``kind="exception"``), returned NaN or infinity
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
    results = _checked_shapes(atoms, results)
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
    results = {"energy": copy.get_potential_energy(), "forces": copy.get_forces()}
    if copy.pbc.all():
        try:
            stress = copy.get_stress()
        except NotImplementedError:  # (ASE's PropertyNotImplementedError): energy and forces are still labels
            stress = None
        except AssertionError:  # (ASE's check of its shape: named by _checked_shapes)
            stress = copy.calc.get_stress(copy)
        if stress is not None:
            results["stress"] = stress
    _check_not_moved(atoms, copy)
    return results


def _checked_shapes(atoms: Atoms, results: dict) -> dict:
    """``results`` as float arrays (the energy a float, a 3x3 stress in Voigt order), or a
    :class:`ReferenceFailure` naming the structure, the field and both shapes."""
    shapes = {"energy": [(), (1,)], "forces": [(len(atoms), 3)], "stress": [(6,), (3, 3)]}
    checked = {}
    for key, value in results.items():
        where = f"for {atoms.get_chemical_formula()} ({len(atoms)} atoms)"
        try:
            value = np.array(value, dtype=float)
        except (TypeError, ValueError) as error:
            raise ReferenceFailure(f"reference returned {key} that is not an array of numbers {where} "
                                   f"({type(error).__name__}: {error})", "exception") from None
        if value.shape not in shapes[key]:
            expected = "a number" if key == "energy" else " or ".join(map(str, shapes[key]))
            raise ReferenceFailure(f"reference returned {key} of shape {value.shape} {where}; expected {expected}",
                                   "exception")
        if key == "energy":
            value = float(value.ravel()[0])
        elif value.shape == (3, 3):
            value = full_3x3_to_voigt_6_stress(value)
        checked[key] = value
    return checked


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


#: Seconds between a reference child's checks that the run that started it is alive.
PARENT_POLL = 0.5


def _end_with_parent(parent: int) -> None:  # pragma: no cover (runs in the child)
    """Kill this process group when ``parent`` is gone (the run killed or stopped by SIGTERM):
    its result could go nowhere, and it would keep the work directory's lock."""
    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def _reference_child(atoms, reference, connection, parent: int) -> None:  # pragma: no cover (runs in the child)
    os.setpgid(0, 0)  # its own process group: a timeout kills what it started too
    _end_with_parent(parent)
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
    process = context.Process(target=_reference_child, args=(atoms, reference, sender, os.getpid()))
    process.start()
    sender.close()
    answered = False
    try:
        if not receiver.poll(timeout):
            _kill_group(process)
            raise ReferenceFailure(f"reference calculation timed out after {timeout:g} s (killed)", "timeout")
        try:
            status, payload = receiver.recv()
        except EOFError:
            process.join()
            raise ReferenceFailure(f"reference process died (exit code {process.exitcode})", "died") from None
        answered = True
        if status == "failure":
            raise ReferenceFailure(*payload)
        if status != "ok":
            raise ReferenceFailure(f"reference calculation failed: {payload}", "exception")
        return payload
    finally:
        receiver.close()
        process.join(5 if answered else 0)
        if process.is_alive():  # interrupted here (Ctrl-C): the calculation is abandoned, not left running
            _kill_group(process)
            process.join()


def _kill_group(process) -> None:
    """SIGKILL a reference child and what it started (its own process group)."""
    for kill in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


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



def reference_calculator(spec: str, search: Sequence[str] = ()) -> BaseCalculator:
    """An ASE calculator from ``"emt"`` or ``"module:factory"`` (a function returning one).

    The ``reference`` of ``gapy learn`` and ``gapy validate``.

    Parameters
    ----------
    spec : str
        ``"emt"`` (any case) for ASE's :class:`~ase.calculators.emt.EMT`, or
        ``"module:factory"``: ``module`` is imported and ``factory()`` is called without
        arguments.
    search : sequence of str or path-like, default=()
        Directories where ``module`` is looked for first (put at the front of
        ``sys.path`` while it is imported), then ``sys.path`` (the installed packages);
        ``gapy learn`` gives the config file's directory and the current directory.

    Returns
    -------
    ase.calculators.calculator.BaseCalculator
        A new calculator.

    Raises
    ------
    TypeError
        ``spec`` is not a string.
    ValueError
        Malformed specification, a module that does not import, no such factory, a
        factory that raises or does not return an ASE calculator.

    See Also
    --------
    reference_factory : A function that makes a new such calculator at each call.

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
    return reference_factory(spec, search)()


def reference_factory(spec: str, search: Sequence[str] = ()) -> Callable[[], BaseCalculator]:
    """A function that returns a new calculator of ``"emt"`` or ``"module:factory"`` at each call.

    The module is imported now; each call runs the factory and checks what it returns.

    Parameters
    ----------
    spec : str
        As :func:`reference_calculator`.
    search : sequence of str or path-like, default=()
        As :func:`reference_calculator`.

    Returns
    -------
    callable
        Without arguments, returning a new ASE calculator; a factory that raises or returns
        something else raises ``ValueError`` naming ``spec``.

    Raises
    ------
    TypeError
        ``spec`` is not a string.
    ValueError
        Malformed specification, a module that does not import or no such factory.

    Examples
    --------
    >>> from gapy.sampling.reference import reference_factory
    >>> make = reference_factory("emt")
    >>> make() is not make(), type(make()).__name__
    (True, 'EMT')
    """
    if not isinstance(spec, str):
        raise TypeError(f"reference must be 'emt' or 'module:factory', got {spec!r}")
    if spec.lower() == "emt":
        from ase.calculators.emt import EMT

        return functools.partial(_checked_call, spec, EMT)
    import importlib

    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"reference {spec!r}: give 'emt' or 'module:factory' (a function returning an ASE "
                         "calculator)")
    directories = list(dict.fromkeys(str(directory) for directory in search))
    try:
        with _front_of_path(directories):
            module = importlib.import_module(module_name)
    except ImportError as error:
        where = ", ".join(directories + ["the installed packages (sys.path)"])
        raise ValueError(f"reference {spec!r}: cannot import {module_name!r} ({error}); looked for it in "
                         f"{where}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"reference {spec!r}: {module_name} has no callable {factory_name!r}")
    return functools.partial(_checked_call, spec, factory)


@contextlib.contextmanager
def _front_of_path(directories: List[str]):
    """``directories`` at the front of ``sys.path`` for the time of the block."""
    sys.path[:0] = directories
    try:
        yield
    finally:
        for directory in directories:
            with contextlib.suppress(ValueError):
                sys.path.remove(directory)


def _checked_call(spec: str, factory: Callable) -> BaseCalculator:
    name = getattr(factory, "__name__", spec)
    try:
        calculator = factory()
    except Exception as error:
        raise ValueError(f"reference {spec!r}: {name}() raised {type(error).__name__}: {error}") from error
    if not isinstance(calculator, BaseCalculator):
        raise ValueError(f"reference {spec!r}: {name}() returned {type(calculator).__name__}, not an ASE "
                         "calculator")
    return calculator

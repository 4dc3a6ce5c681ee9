"""``validate``: physical properties of a model next to a reference, with the model's uncertainty.

Each property is computed with the same procedure (:mod:`.eos`, :mod:`.elastic`,
:mod:`.phonons`, :mod:`.defects`, :mod:`.barrier`) for the model and for the reference,
each at its own equilibrium. A failure (no convergence, a reference that raises, a
structure that does not suit the property) is recorded for that property only.
"""

import csv
import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from .. import __version__
from ..calculator import GAPCalculator
from ..estimator import GAPRegressor
from ..exceptions import GapyError
from ..estimator import load_model
from ..sampling.reference import reference_factory
from . import barrier, defects, elastic, eos, phonons
from ._base import Context, Outcome, Settings
from ._structures import check_crystal, conventional_cell
from ._uncertainty import PosteriorDraws, max_local_std, std_over_draws

#: Property families in the order they run, and what ``properties=`` accepts.
FAMILIES = ("eos", "elastic", "phonons", "vacancy", "surfaces", "barrier")

#: Names always present in ``validation.json`` for cubic crystals (``null`` if not computed).
CUBIC_NAMES = ("lattice_constant", "equilibrium_volume", "bulk_modulus", "C11", "C12", "C44",
               "vacancy_formation_energy", "surface_energy_100", "surface_energy_110", "surface_energy_111",
               "vacancy_migration_barrier")

_FAMILY_OF = {**{name: "eos" for name in eos.UNITS}, **{name: "elastic" for name in elastic.FULL_NAMES},
              "vacancy_formation_energy": "vacancy", "vacancy_migration_barrier": "barrier"}

_UNITS = {**eos.UNITS, **{name: "GPa" for name in elastic.FULL_NAMES}, "vacancy_formation_energy": "eV",
          "vacancy_migration_barrier": "eV"}

#: A reference below this fraction of the largest of its family (same unit) is ~0 (an elastic
#: constant zero by symmetry): its relative difference is not given, only the absolute one.
RELATIVE_FLOOR = 0.01

#: A phonon frequency below minus this (THz) is imaginary, beyond numerical noise.
IMAGINARY_THZ = 0.01


@dataclass
class PropertyResult:
    """One validated property.

    Made by :func:`validate`; every parameter is stored as an attribute of the same
    name.

    Parameters
    ----------
    name : str
        ``lattice_constant``, ``bulk_modulus``, ``C11``, ``surface_energy_111``, ...
    unit : str
        Unit of ``model``, ``reference`` and ``model_std``: ``"A"``, ``"A^3/atom"``,
        ``"GPa"``, ``"THz"``, ``"eV"`` or ``"J/m^2"``.
    model : float or None, default=None
        The property by the model (None: not computed or failed).
    reference : float or None, default=None
        The property by the reference (None: not computed, failed or no reference).
    model_std : float or None, default=None
        Standard deviation of the model's value from its own uncertainty (same unit);
        None for a model without uncertainties.
    flagged : bool or None, default=None
        True when the model is unsure on the structures this property used (see
        :func:`validate`); None without uncertainties.
    max_local_std : float or None, default=None
        Largest local-energy standard deviation of any atom of those structures (eV).
    error : str or None, default=None
        Why the model's or the reference's value is missing.
    family : str, default=""
        The procedure that computed it (``eos``, ``elastic``, ...).
    reference_scale : float or None, default=None
        The largest ``|reference|`` of the properties of the same family and unit (set by
        :func:`validate`): a reference below ``RELATIVE_FLOOR`` (1 %) of it is ~0, such as
        an elastic constant zero by symmetry, and gets no relative difference.

    Examples
    --------
    >>> from gapy.validation import PropertyResult
    >>> result = PropertyResult("bulk_modulus", "GPa", model=133.0, reference=140.0, family="eos")
    >>> result.difference, result.relative_difference
    (-7.0, -0.05)
    """

    name: str
    unit: str
    model: Optional[float] = None
    reference: Optional[float] = None
    model_std: Optional[float] = None
    flagged: Optional[bool] = None
    max_local_std: Optional[float] = None
    error: Optional[str] = None
    family: str = ""
    reference_scale: Optional[float] = None

    @property
    def difference(self) -> Optional[float]:
        """``model - reference`` in ``unit`` (None if either is missing).

        Examples
        --------
        >>> from gapy.validation import PropertyResult
        >>> PropertyResult("C11", "GPa", model=160.0, reference=165.0).difference
        -5.0
        >>> PropertyResult("C11", "GPa", reference=165.0).difference is None
        True
        """
        if self.model is None or self.reference is None:
            return None
        return self.model - self.reference

    @property
    def relative_difference(self) -> Optional[float]:
        """``(model - reference) / |reference|``, or None where it means nothing.

        A fraction, not a percentage. None if either value is missing or the reference
        is ~0: exactly 0, or below ``RELATIVE_FLOOR`` (1 %) of :attr:`reference_scale`
        (a constant zero by symmetry, whose reference is numerical noise); then only
        :attr:`difference` is meaningful.

        Examples
        --------
        >>> from gapy.validation import PropertyResult
        >>> PropertyResult("lattice_constant", "A", model=5.5, reference=5.0).relative_difference
        0.1
        >>> PropertyResult("lattice_constant", "A", model=5.5, reference=0.0).relative_difference is None
        True
        >>> c14 = PropertyResult("C14", "GPa", model=1e-3, reference=1e-6, reference_scale=170.0)
        >>> c14.relative_difference is None, c14.difference
        (True, 0.000999)
        """
        if self.difference is None or self.reference == 0:
            return None
        if self.reference_scale is not None and abs(self.reference) < RELATIVE_FLOOR * self.reference_scale:
            return None
        return self.difference / abs(self.reference)


@dataclass
class ValidationReport:
    """Everything :func:`validate` computed.

    Every parameter is stored as an attribute of the same name; ``report[name]`` is
    ``report.results[name]``.

    Parameters
    ----------
    results : dict of str to PropertyResult, default={}
        Property name to :class:`PropertyResult`, in the order computed.
    curves : dict, default={}
        Plot data per family and side (``curves["eos"]["model"]``, ...).
    info : dict, default={}
        Structure, model, reference, settings, flag threshold, timings (s).

    Examples
    --------
    >>> from gapy.validation import PropertyResult, ValidationReport
    >>> report = ValidationReport(results={
    ...     "bulk_modulus": PropertyResult("bulk_modulus", "GPa", model=133.0, reference=140.0,
    ...                                    model_std=2.5, flagged=False, family="eos"),
    ...     "C44": PropertyResult("C44", "GPa", reference=80.0, error="model: no convergence",
    ...                           family="elastic")})
    >>> report["bulk_modulus"].difference
    -7.0
    """

    results: Dict[str, PropertyResult] = field(default_factory=dict)
    curves: Dict[str, dict] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> PropertyResult:
        return self.results[name]

    def to_dict(self) -> dict:
        """``{name: {"model", "reference", "unit", "model_std", "flagged", ...}}``.

        Returns
        -------
        dict
            Property name to the fields of its :class:`PropertyResult` (all but
            ``name``), as plain Python values; the content of ``validation.json``.

        Examples
        --------
        >>> from gapy.validation import PropertyResult, ValidationReport
        >>> report = ValidationReport(results={
        ...     "bulk_modulus": PropertyResult("bulk_modulus", "GPa", model=133.0, reference=140.0,
        ...                                    model_std=2.5, flagged=False, family="eos"),
        ...     "C44": PropertyResult("C44", "GPa", reference=80.0, error="model: no convergence",
        ...                           family="elastic")})
        >>> report.to_dict()["bulk_modulus"]["model"], report.to_dict()["C44"]["error"]
        (133.0, 'model: no convergence')
        """
        return {name: {key: _plain(value) for key, value in asdict(result).items() if key != "name"}
                for name, result in self.results.items()}

    def rows(self) -> List[dict]:
        """One flat dict per property (the CSV columns).

        Returns
        -------
        list of dict
            Keys ``property``, ``unit``, ``model``, ``model_std``, ``reference``,
            ``difference``, ``difference_percent``, ``flagged``, ``max_local_std_eV``
            and ``error`` (``""`` if none); missing values are None.

        Examples
        --------
        >>> from gapy.validation import PropertyResult, ValidationReport
        >>> report = ValidationReport(results={
        ...     "bulk_modulus": PropertyResult("bulk_modulus", "GPa", model=133.0, reference=140.0,
        ...                                    model_std=2.5, flagged=False, family="eos"),
        ...     "C44": PropertyResult("C44", "GPa", reference=80.0, error="model: no convergence",
        ...                           family="elastic")})
        >>> row = report.rows()[0]
        >>> row["property"], row["difference"], row["difference_percent"]
        ('bulk_modulus', -7.0, -5.0)
        """
        rows = []
        for result in self.results.values():
            relative = result.relative_difference
            rows.append({
                "property": result.name, "unit": result.unit, "model": result.model,
                "model_std": result.model_std, "reference": result.reference,
                "difference": result.difference,
                "difference_percent": None if relative is None else 100 * relative,
                "flagged": result.flagged, "max_local_std_eV": result.max_local_std,
                "error": result.error or "",
            })
        return rows

    def table(self) -> str:
        """The results as a text table (``*`` marks flagged properties).

        Returns
        -------
        str
            One line per property (the difference in percent of the reference; where the
            reference is ~0, see :attr:`PropertyResult.relative_difference`, the absolute
            difference in the property's unit, without ``%``, and a note at the end), each
            error on a line of its own after it starting with ``!`` (an error shared by
            several properties once, after the first of them), and a note for each side whose
            crystal is unstable (imaginary phonon frequencies, or elastic constants failing Born's
            criteria).

        Examples
        --------
        >>> from gapy.validation import PropertyResult, ValidationReport
        >>> report = ValidationReport(results={
        ...     "bulk_modulus": PropertyResult("bulk_modulus", "GPa", model=133.0, reference=140.0,
        ...                                    model_std=2.5, flagged=False, family="eos"),
        ...     "C44": PropertyResult("C44", "GPa", reference=80.0, error="model: no convergence",
        ...                           family="elastic")})
        >>> print(report.table())  # doctest: +NORMALIZE_WHITESPACE
        property                            model    +- std    reference      diff unit      flag
        -----------------------------------------------------------------------------------------
        bulk_modulus                          133       2.5          140     -5.0% GPa
        C44                                     -         -           80           GPa
            ! model: no convergence
        """
        header = f"{'property':<28} {'model':>12} {'+- std':>9} {'reference':>12} {'diff':>9} {'unit':<9} flag"
        lines = [header, "-" * len(header)]
        first, repeats = {}, {}  # error: its line; how many more properties had it
        absolute = False  # some reference ~0: its absolute difference is shown
        for result in self.results.values():
            relative, difference = result.relative_difference, result.difference
            if relative is not None:
                diff = f"{100 * relative:+.1f}%"
            elif difference is not None:
                diff, absolute = _fmt(difference, sign=True), True
            else:
                diff = ""
            lines.append(
                f"{result.name:<28} {_fmt(result.model):>12} {_fmt(result.model_std):>9} "
                f"{_fmt(result.reference):>12} {diff:>9} {result.unit:<9} {'*' if result.flagged else ''}"
            )
            if result.error in first:
                repeats[result.error] = repeats.get(result.error, 0) + 1
            elif result.error:
                first[result.error] = len(lines)
                lines.append(f"    ! {result.error}")
        for error, n in repeats.items():
            lines[first[error]] += f" (the same for {n} more propert{'ies' if n > 1 else 'y'} below)"
        if absolute:
            lines.append(f"diff without %: model - reference in the unit, where the reference is ~0 (below "
                         f"{100 * RELATIVE_FLOOR:g} % of the largest of its family, e.g. zero by symmetry)")
        return "\n".join(lines + _stability_notes(self.results))

    def write(self, directory: Union[str, Path], plots: bool = True) -> List[Path]:
        """``validation.csv``, ``validation.json`` and (with ``plots``) the PNG plots in ``directory``.

        Also ``validation_info.json`` (:attr:`info`). The CSV and JSON files are
        replaced atomically; ``validation.json`` holds :meth:`to_dict` with NaN and
        infinity as ``null``. The plots (``eos.png``, ``phonons.png``, ``neb.png``) are
        written for the families with curves.

        Parameters
        ----------
        directory : str or Path
            Output directory, created (with its parents) if missing.
        plots : bool, default=True
            Write the PNG plots too.

        Returns
        -------
        list of Path
            The files written.

        Examples
        --------
        >>> import tempfile
        >>> from gapy.validation import PropertyResult, ValidationReport
        >>> report = ValidationReport(results={
        ...     "bulk_modulus": PropertyResult("bulk_modulus", "GPa", model=133.0, reference=140.0,
        ...                                    model_std=2.5, flagged=False, family="eos"),
        ...     "C44": PropertyResult("C44", "GPa", reference=80.0, error="model: no convergence",
        ...                           family="elastic")})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     [path.name for path in report.write(tmp)]
        ['validation.csv', 'validation.json', 'validation_info.json']
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = [directory / "validation.csv", directory / "validation.json"]
        rows = self.rows()
        _atomic_write(written[0], lambda handle: _write_csv(handle, rows))
        document = {"properties": self.to_dict(), "info": _plain(self.info)}
        _atomic_write(written[1], lambda handle: json.dump(_plain_json(document["properties"]), handle, indent=1))
        _atomic_write(directory / "validation_info.json",
                      lambda handle: json.dump(_plain_json(document["info"]), handle, indent=1))
        written.append(directory / "validation_info.json")
        if plots:
            from .plots import eos_plot, neb_plot, phonon_plot

            for family, function, name in (("eos", eos_plot, "eos.png"), ("phonons", phonon_plot, "phonons.png"),
                                           ("barrier", neb_plot, "neb.png")):
                if self.curves.get(family):
                    path = directory / name
                    function(self.curves[family], path, title=self.info.get("structure", ""))
                    written.append(path)
        return written


def validate(
    model_or_calculator,
    structure: Atoms,
    reference=None,
    properties: Optional[Sequence[str]] = None,
    *,
    settings: Optional[Settings] = None,
    output: Optional[Union[str, Path]] = None,
    plots: bool = True,
    progress: Union[bool, Callable[[str], None]] = True,
    **overrides,
) -> ValidationReport:
    """Properties a simulation needs, by the model and a reference, with the model's uncertainty.

    Parameters
    ----------
    model_or_calculator : GAPRegressor, GAPCalculator, str, os.PathLike or ase Calculator
        A fitted model, a model file, or any ASE calculator (then ``model_std`` and
        ``flagged`` are None).
    structure : ase.Atoms
        The crystal (any cell: the conventional cell is found with spglib). Not modified.
    reference : None, str, os.PathLike, dict or ase Calculator, optional
        ``"emt"`` (ASE's EMT), ``"module:factory"`` (imported and called without
        arguments: any ASE calculator, a DFT code included), a calculator, a ``.json``
        file or dict of published values (``{"bulk_modulus": 140.0}`` or ``{"bulk_modulus":
        {"value": 140.0, "unit": "GPa"}}``), or None (model only).
    properties : sequence of str, optional
        Families (``"eos"``, ``"elastic"``, ``"phonons"``, ``"vacancy"``, ``"surfaces"``,
        ``"barrier"``) or property names (``"bulk_modulus"``, ``"surface_energy_110"``);
        default: all families.
    settings : Settings, optional
        Procedure settings (default: ``Settings()``).
    output : str or os.PathLike, optional
        Directory for ``validation.csv``, ``validation.json``,
        ``validation_info.json`` and the plots (see :meth:`ValidationReport.write`),
        rewritten after each property so that finished results survive a later crash.
    plots : bool, default=True
        Write the PNG plots (EOS with the model's std band, phonon dispersion, NEB).
    progress : bool or callable, default=True
        Print a line per step (or pass each line to the callable).
    **overrides
        Single fields of :class:`Settings` that replace those of ``settings``
        (``miller=[(1, 1, 0)]``, ``flag_std=0.02``, ...).

    Returns
    -------
    ValidationReport
        Every property asked for (for cubic crystals also the standard names not
        computed, with None values), the plot curves and ``info``. A property that
        failed has None values and its ``error`` says why.

    Raises
    ------
    TypeError
        ``structure`` is not an ``ase.Atoms``, ``settings`` is not a :class:`Settings`,
        or the model or reference is of an unknown type.
    ValueError
        Unknown property or setting, a setting out of range, a reference that cannot
        be resolved, or a reference value given in another unit than gapy reports.
    gapy.GapyError
        ``model_or_calculator`` is a path that is not a file
        (:class:`~gapy.ModelFileError`: not a readable model file), or a model that does
        not know a species of ``structure`` with no reference calculator to compute.

    Notes
    -----
    A property is *flagged* when some atom of some structure it used (EOS cells,
    strained cells, displaced supercells, relaxed vacancy and slab cells, NEB images) has
    a predicted local-energy standard deviation above ``flag_std`` (default 0.01 eV); see
    ``docs/validation.md``. ``model_std`` comes from posterior draws of the model's
    predictions at those structures, with correlations between them.

    References
    ----------
    V. L. Deringer, A. P. Bartók, N. Bernstein, D. M. Wilkins, M. Ceriotti and
    G. Csányi, "Gaussian process regression for materials and molecules", Chem. Rev.
    121, 10073 (2021) (validation of GAP models by the properties they predict).

    Examples
    --------
    >>> from gapy.validation import validate
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> report = validate(EMT(), bulk("Cu", "fcc", a=3.6), "emt", ["eos"], progress=False)
    >>> round(report["lattice_constant"].model, 3) == round(report["lattice_constant"].reference, 3)
    True
    """
    if not isinstance(structure, Atoms):
        raise TypeError(f"structure must be an ase.Atoms, got {type(structure).__name__}")
    settings = _settings(settings, overrides)
    say = _printer(progress)
    model, model_calc, model_factory = _resolve_model(model_or_calculator)
    cutoff = None if model is None else model._largest_cutoff(model.descriptor_)
    if cutoff is not None and settings.supercell_length < cutoff:
        warnings.warn(f"supercell_length {settings.supercell_length:g} A is below the model's cutoff "
                      f"({cutoff:g} A): the vacancy, the NEB's moving atom and the "
                      "phonon displacements then interact with their own periodic images, for model and reference "
                      "alike, and phonons are computed only at the q-points that fit the small cell; give at least "
                      "the cutoff (default 7 A)", RuntimeWarning, stacklevel=2)
    reference_calc, reference_factory, reference_values, reference_name = _resolve_reference(reference)
    structure = Atoms(structure.numbers, structure.positions, cell=structure.cell, pbc=structure.pbc)
    families, whole, wanted = _selection(properties)

    report = ValidationReport(info={
        "gapy_version": __version__,
        "structure": structure.get_chemical_formula(),
        "model": _describe(model_or_calculator),
        "reference": reference_name,
        "settings": asdict(settings),
        "flag_rule": f"largest local-energy std of any atom of the structures used > flag_std = "
                     f"{settings.flag_std} eV",
        "timings_s": {},
    })
    species_error = _unknown_species(model, structure)
    if species_error and reference_calc is None:
        raise GapyError(species_error)
    if species_error:
        say(f"model: {species_error}; computing the reference only")
    cubic = _is_cubic(structure)
    if cubic:  # the names every report of a cubic crystal has, null where not computed
        for name in CUBIC_NAMES:
            report.results[name] = PropertyResult(name, _unit({}, name), family=_FAMILY_OF.get(name, "surfaces"))
    tasks = _tasks(families, whole, wanted, settings, structure if cubic is not None else None)
    contexts = {"model": Context(model_calc, structure, settings, model_factory)}
    if reference_calc is not None:
        contexts["reference"] = Context(reference_calc, structure, settings, reference_factory)
    draws = None if model is None else PosteriorDraws(model, settings.n_samples, settings.random_state)
    start_all = time.perf_counter()
    for number, (family, label, function) in enumerate(tasks, 1):
        say(f"[{number}/{len(tasks)}] {label} ...")
        start = time.perf_counter()
        outcomes, errors = {}, {}
        for side, context in contexts.items():
            if side == "model" and species_error:
                errors[side] = species_error
                continue
            try:
                outcomes[side] = function(context)
            except Exception as error:  # one property's failure must not stop the others
                errors[side] = _message(error)
        names = _names(outcomes, label)
        computed = names if outcomes else []
        if family not in whole:
            missing = [n for n in sorted(wanted) if _family(n) == family and n not in names]
            if family == "surfaces":  # one task per surface: the others are not missing
                missing = []
            names = [n for n in names if n in wanted] + missing or [n for n in wanted if _family(n) == family]
        for name in names:
            result = report.results.get(name) or PropertyResult(name, _unit(outcomes, name), family=family)
            result.unit = _unit(outcomes, name) or result.unit
            report.results[name] = result
            for side, outcome in outcomes.items():
                setattr(result, side, _finite(outcome.values.get(name)))
            if reference_values is not None:
                result.reference = _reference_value(reference_values, name, result.unit)
            problems = [f"{side}: {errors[side]}" for side in ("model", "reference") if side in errors]
            if outcomes and name not in computed:  # asked for by name, but not a property of this crystal
                problems = [f"{name} is not computed for this crystal ({structure.get_chemical_formula()}); "
                            f"{label}: {', '.join(computed[:12])}{', ...' if len(computed) > 12 else ''}"]
            result.error = "; ".join(problems) or None
        drawn = None
        if "model" in outcomes and model is not None:
            try:
                drawn = _uncertainty(report, outcomes["model"], [n for n in names if n in computed], draws, model,
                                     settings)
            except Exception as error:
                for name in names:
                    report.results[name].error = "; ".join(filter(None, [report.results[name].error,
                                                                          f"model std: {_message(error)}"]))
        if outcomes:
            curves = {side: dict(outcome.curves) for side, outcome in outcomes.items() if outcome.curves}
            if family in ("eos", "barrier") and drawn and "model" in curves:
                curves["model"]["energy_std"] = _profile_std(curves["model"], drawn, outcomes["model"], family)
            if curves:
                report.curves[family] = {**report.curves.get(family, {}), **curves}
        elapsed = time.perf_counter() - start
        report.info["timings_s"][label] = round(elapsed, 2)
        status = ", ".join(f"{side} {'skipped' if errors[side] == species_error else 'failed'}"
                           for side in errors) or "done"
        say(f"      {status} in {elapsed:.1f} s" + "".join(f"\n      {side}: {errors[side]}" for side in errors
                                                        if errors[side] != species_error))
        _set_reference_scales(report)
        if output is not None:
            report.write(output, plots=False)
    if model is not None and not species_error:
        try:
            relaxed = contexts["model"].equilibrium("bulk")
            report.info["bulk_max_local_std_eV"] = max_local_std(model, [relaxed])
        except Exception:  # the bulk failure is already reported by the properties
            pass
    report.info["timings_s"]["total"] = round(time.perf_counter() - start_all, 2)
    if output is not None:
        report.write(output, plots=plots)
    return report


# ------------------------------------------------------------------ inputs


def _resolve_model(model_or_calculator):
    """``(GAPRegressor or None, calculator, factory or None)`` from a model, model file or calculator."""
    value = model_or_calculator
    if isinstance(value, (str, os.PathLike)):
        if not Path(value).is_file():
            raise GapyError(f"{value}: no such model file")
        value = load_model(value)
    if isinstance(value, GAPRegressor):
        return value, GAPCalculator(value), lambda: GAPCalculator(value)
    if isinstance(value, GAPCalculator):
        variance = value.variance
        return value.model, GAPCalculator(value.model, variance=variance), \
            lambda: GAPCalculator(value.model, variance=variance)
    if isinstance(value, BaseCalculator):
        return None, value, _stateless_factory(value)
    raise TypeError(f"model_or_calculator must be a GAPRegressor, a GAPCalculator, a model file or an ASE "
                    f"calculator, got {type(model_or_calculator).__name__}")


def _stateless_factory(calc) -> Optional[Callable]:
    """New instances for calculators known to keep no external state (EMT), else None."""
    from ase.calculators.emt import EMT

    return EMT if type(calc) is EMT else None


def _resolve_reference(reference):
    """``(calculator, factory, values, description)`` from a reference specification.

    ``"emt"`` gives ASE's EMT; ``"module:factory"`` imports ``module`` and calls
    ``factory()``; a ``.json`` path or a dict gives reference values; a calculator is
    used as it is; None gives no reference.
    """
    if reference is None:
        return None, None, None, None
    if isinstance(reference, BaseCalculator):
        return reference, _stateless_factory(reference), None, type(reference).__name__
    if isinstance(reference, dict):
        return None, None, _check_values(reference, "reference values"), "values"
    if isinstance(reference, os.PathLike) or (isinstance(reference, str) and reference.endswith(".json")):
        path = Path(reference)
        if not path.is_file():
            raise ValueError(f"reference {str(path)!r}: no such JSON file")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"reference {str(path)!r}: invalid JSON ({error})") from None
        return None, None, _check_values(values, str(path)), str(path)
    if isinstance(reference, str):
        try:
            factory = reference_factory(reference)
        except ValueError as error:  # (the same parser as gapy learn's; here a JSON file is possible too)
            raise ValueError(f"{error}, or a .json file of reference values") from None
        return factory(), factory, None, reference
    raise TypeError(f"reference must be None, 'emt', 'module:factory', a .json path, a dict or an ASE "
                    f"calculator, got {type(reference).__name__}")


def _check_values(values, where: str) -> dict:
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a JSON object mapping property names to values")
    out = {}
    for name, value in values.items():
        if _family(name) is None:  # a misspelt name would be dropped without a word
            raise ValueError(f"{where}: unknown property {name!r}; names are those of the report, such as "
                             f"{', '.join(CUBIC_NAMES[:4])}, lattice_a, C13, surface_energy_110, phonon_X_3")
        if _surface_family(name):
            _miller_of(name)  # checks the name
        if isinstance(value, dict):
            if "value" not in value:
                raise ValueError(f"{where}: {name!r} has no 'value'")
            unit = value.get("unit")
            value = value["value"]
            if unit is not None and unit != _unit({}, name):  # checked here, not after the work
                raise ValueError(f"{where}: {name!r} is in {unit!r}; gapy reports it in {_unit({}, name)!r}")
        else:
            unit = None
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):  # (json reads NaN and Infinity)
            raise ValueError(f"{where}: {name!r} must be a finite number or null, got {value!r}")
        out[name] = (None if value is None else float(value), unit)
    return out


def _reference_value(values: dict, name: str, unit: str) -> Optional[float]:
    if name not in values:
        return None
    value, given_unit = values[name]
    if given_unit is not None and given_unit != unit:
        raise ValueError(f"reference value {name!r} is in {given_unit!r}; gapy reports it in {unit!r}")
    return value


def _settings(settings: Optional[Settings], overrides: dict) -> Settings:
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a gapy.validation.Settings, got {type(settings).__name__}")
    known = set(asdict(settings))
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown validation settings {sorted(unknown)}; known: {sorted(known)}")
    values = {**asdict(settings), **overrides}
    for name, least in (("eos_points", 5), ("relax_steps", 1), ("neb_images", 1), ("neb_steps", 1),
                        ("n_samples", 2)):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"setting {name} must be an integer >= {least}, got {value!r}")
    for name in ("eos_strain", "elastic_strain", "fmax", "cell_fmax", "supercell_length", "phonon_displacement",
                 "slab_thickness", "vacuum", "neb_fmax", "flag_std"):
        if not isinstance(values[name], (int, float)) or not values[name] > 0:
            raise ValueError(f"setting {name} must be a positive number, got {values[name]!r}")
    if values["miller"] is not None:
        miller = [tuple(int(i) for i in m) for m in values["miller"]]
        if not miller or any(len(m) != 3 or not any(m) for m in miller):
            raise ValueError(f"setting miller must be a list of three-integer Miller indices (not 0 0 0), "
                             f"got {values['miller']!r}")
        values["miller"] = miller
    return Settings(**values)


def _selection(properties) -> Tuple[Tuple[str, ...], set, set]:
    """Families to run, the families asked for whole, and the single names asked for."""
    if properties is None:
        return FAMILIES, set(FAMILIES), set()
    if isinstance(properties, str):
        properties = [properties]
    families, whole, names = set(), set(), set()
    for item in properties:
        if item in FAMILIES:
            families.add(item)
            whole.add(item)
            continue
        family = _family(item)
        if family is None:
            raise ValueError(f"unknown property {item!r}: give families {', '.join(FAMILIES)} or property "
                             f"names such as {', '.join(CUBIC_NAMES[:4])}, surface_energy_110, phonon_X_3")
        if family == "surfaces":
            _miller_of(item)  # checks the name
        names.add(item)
        families.add(family)
    if not families:
        raise ValueError("properties is empty: give at least one family or property name")
    return tuple(f for f in FAMILIES if f in families), whole, names


def _surface_family(name: str) -> Optional[str]:
    return "surfaces" if name.startswith("surface_energy_") else None


def _miller_of(name: str) -> Tuple[int, int, int]:
    text = name[len("surface_energy_"):]
    tokens = re.findall(r"m?\d", text)
    digits = [-int(t[1:]) if t.startswith("m") else int(t) for t in tokens]
    if "".join(tokens) != text or len(digits) != 3 or not any(digits):
        raise ValueError(f"{name!r}: Miller indices must be three digits (not all 0), as surface_energy_110 or "
                         f"surface_energy_1m10 for (1, -1, 0)")
    return tuple(digits)


def _family(name: str) -> Optional[str]:
    return _FAMILY_OF.get(name) or _surface_family(name) or ("phonons" if name.startswith("phonon_") else None)


def _tasks(families, whole, wanted, settings: Settings, crystal: Optional[Atoms]):
    tasks = []
    for family in families:
        if family == "eos":
            tasks.append(("eos", "equation of state", eos.compute))
        elif family == "elastic":
            tasks.append(("elastic", "elastic constants", elastic.compute))
        elif family == "phonons":
            tasks.append(("phonons", "phonons", phonons.compute))
        elif family == "vacancy":
            tasks.append(("vacancy", "vacancy formation energy", defects.compute_vacancy))
        elif family == "surfaces":
            miller = settings.miller or (defects.default_miller(crystal) if crystal is not None
                                         else defects.CELL_AXES_MILLER)
            if "surfaces" not in whole:  # only the surfaces asked for by name
                miller = [_miller_of(name) for name in sorted(wanted) if _surface_family(name)]
            for indices in miller:
                tasks.append(("surfaces", defects.miller_name(indices),
                              lambda context, indices=indices: defects.compute_surface(context, indices)))
        elif family == "barrier":
            tasks.append(("barrier", "vacancy migration barrier", barrier.compute))
    return tasks


def _names(outcomes: Dict[str, Outcome], label: str) -> List[str]:
    names = []
    for outcome in outcomes.values():
        names += [n for n in outcome.values if n not in names]
    if not names:  # both sides failed: name the property from the task
        names = {"equation of state": ["lattice_constant", "equilibrium_volume", "bulk_modulus"],
                 "elastic constants": ["C11", "C12", "C44"], "phonons": ["phonons"],
                 "vacancy formation energy": ["vacancy_formation_energy"],
                 "vacancy migration barrier": ["vacancy_migration_barrier"]}.get(label, [label])
    return names


def _unit(outcomes: Dict[str, Outcome], name: str) -> str:
    for outcome in outcomes.values():
        if name in outcome.units:
            return outcome.units[name]
    if name.startswith("surface_energy_"):
        return "J/m^2"
    return _UNITS.get(name, "THz" if name.startswith("phonon") else "")


def _uncertainty(report, outcome: Outcome, names, draws: Optional[PosteriorDraws], model, settings: Settings):
    """Set model_std, max_local_std and flagged of ``names``; returns the draws' predictions."""
    largest = max_local_std(model, outcome.structures)
    stds, drawn = {}, None
    if outcome.from_predictions is not None and draws is not None:
        drawn = draws.predict(outcome.structures, outcome.needs)
        values = []
        for predictions in drawn:
            try:
                values.append(outcome.from_predictions(predictions))
            except GapyError:  # e.g. an EOS draw without a minimum in range
                values.append({})
        stds = std_over_draws(values, names)
    for name in names:
        result = report.results[name]
        result.model_std = stds.get(name)
        result.max_local_std = largest
        result.flagged = bool(largest > settings.flag_std)
    return drawn


def _profile_std(curve: dict, drawn: List[List[dict]], outcome: Outcome, family: str) -> np.ndarray:
    """Std over the draws of the plotted energies: per atom and relative to the EOS minimum,
    relative to the start for the NEB (eV)."""
    energies = np.array([[p["energy"] for p in predictions] for predictions in drawn])
    if family == "eos":
        n_atoms = len(outcome.structures[0])
        lowest = int(np.argmin(curve["energies"]))
        return (energies - energies[:, [lowest]]).std(axis=0, ddof=1) / n_atoms
    return (energies - energies[:, [0]]).std(axis=0, ddof=1)


def _unknown_species(model: Optional[GAPRegressor], structure: Atoms) -> Optional[str]:
    if model is None:
        return None
    known = set(model.descriptor_.atomic_numbers.tolist())
    missing = sorted({s for s, z in zip(structure.get_chemical_symbols(), structure.numbers) if z not in known})
    if not missing:
        return None
    from ase.data import chemical_symbols

    return (f"the structure ({structure.get_chemical_formula()}) has species {missing} that the model does not "
            f"know (it was fitted for {[chemical_symbols[z] for z in sorted(known)]}); fit a model with them")


def _is_cubic(structure: Atoms) -> Optional[bool]:
    try:
        check_crystal(structure, "validation")
        return conventional_cell(structure)[1]
    except Exception:
        return None


def _message(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, (GapyError, ValueError, ImportError)):
        text = f"{type(error).__name__}: {text}"
    return text


def _describe(value) -> str:
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, GAPCalculator):
        return "GAPCalculator"
    return type(value).__name__


def _finite(value) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value, sign: bool = False) -> str:
    if value is None:
        return "-"
    plus = "+" if sign else ""
    return f"{value:{plus}.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:{plus}.2e}"


def _set_reference_scales(report: ValidationReport) -> None:
    """Each result's reference_scale: the largest |reference| of its family and unit."""
    largest: Dict[Tuple[str, str], float] = {}
    for result in report.results.values():
        if result.reference is not None:
            key = (result.family, result.unit)
            largest[key] = max(largest.get(key, 0.0), abs(result.reference))
    for result in report.results.values():
        result.reference_scale = largest.get((result.family, result.unit))


def _stability_notes(results: Dict[str, PropertyResult]) -> List[str]:
    """A line per side whose crystal is unstable: imaginary phonons, elastic constants failing Born's criteria."""
    notes = []
    for side in ("model", "reference"):
        values = {name: getattr(r, side) for name, r in results.items() if getattr(r, side) is not None}
        imaginary = {n: v for n, v in values.items() if n.startswith("phonon_") and v < -IMAGINARY_THZ}
        if imaginary:
            lowest = min(imaginary, key=imaginary.get)
            notes.append(f"{side}: imaginary phonon frequencies (shown negative, phonopy's convention), lowest "
                         f"{lowest} = {imaginary[lowest]:.3g} THz: the crystal is dynamically unstable")
        if all(n in values for n in elastic.FULL_NAMES):
            c = np.array([[values[f"C{min(i, j)}{max(i, j)}"] for j in range(1, 7)] for i in range(1, 7)])
            eigenvalues = np.linalg.eigvalsh(c)
        elif all(n in values for n in elastic.CUBIC_NAMES):
            eigenvalues = np.array([values["C11"] - values["C12"], values["C11"] + 2 * values["C12"], values["C44"]])
        else:
            continue
        if eigenvalues.min() < 0:
            notes.append(f"{side}: the elastic constants fail the Born stability criteria (lowest eigenvalue of "
                         f"the stiffness {eigenvalues.min():.3g} GPa): the crystal is mechanically unstable")
    return notes


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def _plain_json(value):
    """``_plain`` with NaN/inf as null (strict JSON)."""
    value = _plain(value)
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv(handle, rows: List[dict]) -> None:
    columns = ["property", "unit", "model", "model_std", "reference", "difference", "difference_percent",
               "flagged", "max_local_std_eV", "error"]
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in row.items()})


def _atomic_write(path: Path, write: Callable) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="") as handle:
        write(handle)
    os.replace(temporary, path)


def _printer(progress):
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(line, flush=True)
    return lambda line: None

"""``gapy fit``: fit a model to labelled structures and write it to a model file."""

import argparse
import difflib
import inspect
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from sklearn.base import clone

from ..descriptors import SOAP, ThreeBody, TwoBody
from ..descriptors.soap import RADIAL_BASES
from ..estimator import GAPRegressor
from ..exceptions import DataFileError, GapyError
from ..io.frames import FileSource
from ..gp import VARIANCE_KINDS
from ..labels import (EV_PER_A3_IN_GPA, EnergyOutlierWarning, LabelConflictWarning, Labels, StressUnitWarning,
                      label_keys, lookalike_labels, mixed_label_names, outlier_message, outlying_energies,
                      read_labels, stress_from_virial)
from ..recommend import Recommendation, recommend
from ..report import evaluate
from ..search import search_settings
from ..sparsify import METHODS
from ..structures import atomic_number, neighbor_pairs, structure_name
from ..term import Term
from ._common import (about, check_outputs, choice, integer, number, number_or_none,
                      print_table, read_frames, species_list, species_map, unknown_species)

def _n_sparse(text: str) -> Union[int, Dict[str, int]]:
    if ":" in text:
        return species_map(text, int)
    return integer(text)


def _integer_or_none(text: str) -> Optional[int]:
    if text.strip().lower() == "none":
        return None
    return integer(text)


def _e0(text: str) -> Union[float, str, Dict[str, float]]:
    if text in ("average", "isolated", "fit"):
        return text
    if ":" in text:
        return species_map(text, float)
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, 'average', 'isolated', 'fit' or SYMBOL:VALUE pairs (Si:-0.79,Ge:-1.2), got {text!r}"
        ) from None


def _baseline(text: str) -> Optional[str]:
    if text.strip().lower() == "none":
        return None
    return choice(("zbl",))(text.strip().lower())


#: Keys of a term's settings (``--two-body``, ``--three-body``): Term and descriptor arguments.
TERM_KEYS = {"delta": float, "theta": float, "n_sparse": int, "r_cut": float, "cutoff_width": float}


def _term(text) -> Optional[dict]:
    """A term's settings: 'none', or KEY=VALUE pairs (delta=3,theta=0.5,n_sparse=30,r_cut=5)."""
    if isinstance(text, dict):
        pairs = text
    elif text.strip().lower() == "none":
        return None
    else:
        try:
            pairs = dict(item.split("=", 1) for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected 'none' or KEY=VALUE pairs such as delta=3,theta=0.5,n_sparse=30,r_cut=5, got {text!r}"
            ) from None
    spec = {}
    for key, value in pairs.items():
        key = key.strip()
        if key not in TERM_KEYS:
            raise argparse.ArgumentTypeError(f"unknown term setting {key!r}; known: {', '.join(TERM_KEYS)}")
        try:
            spec[key] = TERM_KEYS[key](value)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"term setting {key} must be a number, got {value!r}") from None
    return spec


def make_terms(settings: dict, species: Sequence[str]) -> Dict[str, Optional[Term]]:
    """``two_body`` and ``three_body`` ``Term`` objects from their settings, for ``species``."""
    out = {}
    for name, descriptor_class in (("two_body", TwoBody), ("three_body", ThreeBody)):
        spec = settings.get(name)
        if name not in settings:
            continue
        if spec is None:
            out[name] = None
            continue
        geometry = {key: spec[key] for key in ("r_cut", "cutoff_width") if key in spec}
        out[name] = Term(descriptor_class(species, **geometry),
                         **{key: spec[key] for key in ("delta", "theta", "n_sparse") if key in spec})
    return out


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _search(text: str) -> Dict[str, List[str]]:
    """``r_cut=4.5,5.5`` to ``{"r_cut": ["4.5", "5.5"]}`` (the values are parsed as the option's)."""
    name, _, values = text.partition("=")
    if not name.strip() or not values.strip():
        raise argparse.ArgumentTypeError(f"expected SETTING=VALUE,VALUE,... (r_cut=4.5,5.5), got {text!r}")
    return {name.strip().replace("-", "_"): [value.strip() for value in values.split(",")]}


def _search_grid(raw, species: Sequence[str], where: str) -> Dict[str, list]:
    """``--search`` values (a list of ``{name: [text, ...]}``, or a TOML table) as a grid of ``set_params`` values."""
    tables = raw if isinstance(raw, list) else [raw]
    grid = {}
    for table in tables:
        for name, values in table.items():
            values = values if isinstance(values, list) else [values]
            if name.replace("-", "_") in NOT_HYPERPARAMETERS or not values:
                raise GapyError(f"{where}: give values of a model setting to compare, got {name}={values}")
            settings = [parse_settings({name: value}, where, targets=("soap", "gap", "term"))
                        for value in values]
            overrides = [recommend_overrides(parsed, species)[0] for parsed in settings]
            ((key, _),) = overrides[0].items()
            grid[key] = [candidate[key] for candidate in overrides]
    return grid


def _fraction(text: str) -> float:
    value = number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value



@dataclass(frozen=True)
class _Option:
    """A ``gapy fit`` setting: command-line flag ``--name-with-dashes`` and TOML key ``name``.

    ``target`` is ``"soap"`` or ``"gap"`` (an argument of ``SOAP`` or ``GAPRegressor``,
    under ``argument`` if it differs from ``name``) or ``"run"`` (used by the command).
    ``types`` are the TOML value types accepted besides strings, which go through
    ``parse``; switches (``types == (bool,)``, no ``parse``) take ``--no-...`` too.
    """

    name: str
    target: str
    parse: Optional[Callable[[str], Any]]
    types: Tuple[type, ...]
    help: str
    metavar: Optional[str] = None
    argument: Optional[str] = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_bool(self) -> bool:
        return self.types == (bool,)


def _defaults(cls) -> Dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


SOAP_DEFAULTS = _defaults(SOAP)
GAP_DEFAULTS = _defaults(GAPRegressor)
_REAL = (int, float)

FIT_OPTIONS: Tuple[_Option, ...] = (
    _Option("species", "soap", species_list, (list,), "chemical species the model knows, e.g. Si,Ge "
            "(default: those in the training data)", "SYMBOLS"),
    _Option("r_cut", "soap", number, _REAL, "SOAP cutoff radius in Angstrom", "A"),
    _Option("n_max", "soap", integer, (int,), "number of SOAP radial basis functions", "N"),
    _Option("l_max", "soap", integer, (int,), "largest SOAP angular momentum", "L"),
    _Option("atom_sigma", "soap", number, _REAL, "width of the Gaussian on each neighbour, Angstrom", "A"),
    _Option("cutoff_width", "soap", number, _REAL, "width of the smooth cutoff transition below "
            "r_cut, Angstrom", "A"),
    _Option("center_weight", "soap", number, _REAL, "weight of an atom's own Gaussian in its density", "W"),
    _Option("radial_basis", "soap", choice(RADIAL_BASES), (), "radial functions before "
            "orthonormalisation: " + ", ".join(RADIAL_BASES), "BASIS"),
    _Option("normalize", "soap", None, (bool,), "normalise each SOAP vector"),
    _Option("scaling_radius", "soap", number_or_none, _REAL, "radial scaling of the SOAP density: "
            "neighbours weighted by 1 / (1 + (r / R)^exponent); 'none': no scaling", "A"),
    _Option("scaling_exponent", "soap", number, _REAL, "exponent of the radial scaling", "X"),
    _Option("zeta", "gap", integer, (int,), "kernel exponent", "Z"),
    _Option("delta", "gap", number, _REAL, "kernel scale in eV (prior std of a local energy)", "EV"),
    _Option("n_sparse", "gap", _n_sparse, (int, dict), "sparse points per species: a number or "
            "SYMBOL:N pairs (Si:400,Ge:200)", "N"),
    _Option("sparse_method", "gap", choice(METHODS), (), "how sparse points are chosen: "
            + ", ".join(METHODS), "METHOD"),
    _Option("sparse_candidates", "gap", _integer_or_none, (int,), "environments per species among which "
            "the sparse points are chosen: more are represented by a seeded uniform sample of this many "
            "(bounds memory); 'none': all", "N"),
    _Option("sigma_energy", "gap", number_or_none, _REAL, "energy noise in eV/atom; 'none': energies are "
            "not fitted (forces-only fits)", "EV"),
    _Option("sigma_force", "gap", number_or_none, _REAL, "force noise in eV/A; 'none': forces are "
            "not fitted", "EV_A"),
    _Option("sigma_virial", "gap", number_or_none, _REAL, "virial noise in eV/atom; 'none': stress "
            "is not fitted", "EV"),
    _Option("sigma_per_atom", "gap", None, (bool,), "scale energy and virial noise by sqrt(number of "
            "atoms)"),
    _Option("config_type_sigma", "gap", _json_object, (dict,), "per-config_type noise as JSON, e.g. "
            "'{\"Surface\": {\"energy\": 0.002, \"force\": 0.1}}' (a table in the TOML file)", "JSON"),
    _Option("e0", "gap", _e0, (int, float, dict), "reference energy per atom in eV: a number, "
            "'average', 'isolated', 'fit' or SYMBOL:VALUE pairs (Si:-0.79,Ge:-1.2)", "E0"),
    _Option("baseline", "gap", _baseline, (), "fixed short-range repulsion the GP corrects: 'zbl' (ZBL "
            "switched off below 0.8 x the shortest distance in the data) or 'none'", "KIND"),
    _Option("two_body", "term", _term, (dict,), "an extra 2-body term: KEY=VALUE pairs of delta (eV), "
            "theta (A), n_sparse (grid points per species pair), r_cut and cutoff_width (A), e.g. "
            "delta=3,theta=0.5,n_sparse=30,r_cut=5 (a table in the TOML file); 'none'", "SETTINGS"),
    _Option("three_body", "term", _term, (dict,), "an extra 3-body term, the same keys as --two-body "
            "(n_sparse: triplets per species triple), e.g. delta=0.3,theta=0.7,n_sparse=100,r_cut=3.5", "SETTINGS"),
    _Option("sparse_jitter", "gap", number, _REAL, "added to the diagonal of K_MM", "X"),
    _Option("energy_key", "gap", str, (), "name of the energy label", "KEY"),
    _Option("forces_key", "gap", str, (), "name of the forces label", "KEY"),
    _Option("stress_key", "gap", str, (), "name of the stress label (eV/A^3, ASE sign)", "KEY"),
    _Option("virial_key", "gap", str, (), "name of the virial label (eV), used without a stress", "KEY"),
    _Option("force_weights_key", "gap", str, (), "name of the optional per-atom force weights "
            "(atoms.arrays; 0 leaves an atom's forces out)", "KEY"),
    _Option("variance", "gap", choice(VARIANCE_KINDS), (), "default kind of predictive variance "
            "stored in the model: " + ", ".join(VARIANCE_KINDS), "KIND"),
    _Option("std_noise", "gap", None, (bool,), "predicted stds of energies, forces and stress include the "
            "fitted label noise (the std of a new label; on with --recommend)"),
    _Option("force_std_precision", "gap", choice(("double", "mixed")), (), "arithmetic of the force stds: "
            "double, or mixed (float32 for the largest product, within 0.5 %%)", "PRECISION"),
    _Option("block_rows", "gap", integer, (int,), "observation rows folded into the QR factor at "
            "a time (bounds memory)", "N"),
    _Option("n_jobs", "gap", integer, (int,),
            "threads (-1: all cores); given, it also bounds the BLAS threads (never above OMP_NUM_THREADS)", "N"),
    _Option("seed", "gap", integer, (int,), "random seed of the sparse point selection and of "
            "--validation-fraction", "N", argument="random_state"),
    _Option("validation", "run", str, (), "structures to report validation errors on", "VAL.xyz"),
    _Option("validation_fraction", "run", _fraction, (float,), "hold out this random fraction of the "
            "training structures for validation", "F"),
    _Option("calibrate", "run", None, (bool,), "scale the predicted standard deviations to the errors "
            "on the validation structures (needs --validation or --validation-fraction)"),
    _Option("search", "run", _search, (dict,), "compare the recommended settings with these values of a "
            "model setting by cross-validation on the training structures, and keep a candidate only if it is "
            "better on every fold (repeat for a grid: --search r_cut=4.5,5.5 --search atom_sigma=0.4,0.5; in "
            "the TOML file a table, search = {r_cut = [4.5, 5.5]})", "SETTING=V1,V2"),
    _Option("folds", "run", integer, (int,), "folds of --search", "N"),
    _Option("recommend", "run", None, (bool,), "choose the settings from the data (gapy.recommend: SOAP, "
            "2-body, ZBL, cutoff from the density; --two-body none drops the pair term) and every delta and "
            "sigma by the evidence; "
            "the model settings given override the recommended ones (deltas and sigmas given are kept); "
            "default: on when no model setting is given"),
    _Option("output", "run", str, (), "model file to write", "MODEL"),
    _Option("progress", "run", None, (bool,), "progress bars"),
    _Option("stream", "run", None, (bool,), "read the training file structure by structure on each pass "
            "instead of holding it in memory (memory then does not grow with the data; the training errors "
            "are reported on a random sample of at most 1000 structures); default: for files over 100 MiB"),
)
_RUN_DEFAULTS = {"validation": None, "validation_fraction": None, "calibrate": False, "output": "model.gapy",
                 "progress": True, "stream": None, "recommend": None, "search": None, "folds": 3}
#: ``gapy fit`` settings that are not model hyperparameters (given alone, the recommended
#: settings are still used).
NOT_HYPERPARAMETERS = ("species", "energy_key", "forces_key", "stress_key", "virial_key", "force_weights_key",
                       "variance", "std_noise", "force_std_precision", "block_rows", "n_jobs", "seed",
                       "sparse_candidates")
#: How to name labels stored under other keys, for the messages of a missing label.
KEY_HINT = "name the labels with --energy-key, --forces-key, --stress-key or --virial-key"
#: The flag for labels whose names contain these words (``REF_energy``, ``dft_forces``).
KEY_FLAGS = (("energy", "--energy-key"), ("force", "--forces-key"), ("stress", "--stress-key"),
             ("virial", "--virial-key"))
#: Structures whose geometry ``gapy fit --recommend`` reads from a streamed file.
RECOMMEND_SAMPLE = 300
#: Training files larger than this (bytes) are streamed unless ``--no-stream``.
STREAM_ABOVE = 100 * 2**20
#: Training structures on which a streamed fit reports its errors.
STREAM_REPORT = 1000


def _default(option: _Option) -> Any:
    if option.target == "soap":
        return SOAP_DEFAULTS.get(option.name)
    if option.target == "gap":
        return GAP_DEFAULTS.get(option.argument or option.name)
    if option.target == "term":
        return None
    return _RUN_DEFAULTS[option.name]


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    groups = {
        "soap": parser.add_argument_group("SOAP descriptor"),
        "gap": parser.add_argument_group("GAP model"),
        "term": parser.add_argument_group("extra terms of the local energy"),
        "run": parser.add_argument_group("data and output"),
    }
    for option in FIT_OPTIONS:
        default = _default(option)
        text = option.help
        if option.parse is number_or_none and default is None:
            text += " (default: none)"
        elif default is not None and option.name not in ("species", "stream"):
            text += f" (default: {'on' if default is True else 'off' if default is False else default})"
        names = (["-o"] if option.name == "output" else []) + [option.flag]
        if option.parse is _search:
            groups[option.target].add_argument(*names, dest=option.name, type=option.parse, action="append",
                                               default=argparse.SUPPRESS, metavar=option.metavar, help=text)
        elif option.is_bool:
            groups[option.target].add_argument(
                *names, dest=option.name, action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS, help=text,
            )
        else:
            groups[option.target].add_argument(
                *names, dest=option.name, type=option.parse, default=argparse.SUPPRESS,
                metavar=option.metavar, help=text,
            )


def read_config(path: Union[str, Path]) -> Dict[str, Any]:
    """Settings of ``gapy fit`` from a TOML file, keys as the options without ``--``.

    Strings go through the same parsing as on the command line (``e0 = "Si:-0.79"``
    works, as does ``e0 = {Si = -0.79}``). Keys may use ``-`` or ``_``.

    Parameters
    ----------
    path : str or Path
        A TOML file (needs Python 3.11 or newer, for ``tomllib``).

    Returns
    -------
    dict
        Option name (with ``_``) to value, as the command-line flags give them; units
        as the flags (Angstrom, eV, eV/A).

    Raises
    ------
    gapy.GapyError
        Missing or invalid file, an unknown key or a value of the wrong type, or Python
        older than 3.11.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from gapy.cli import read_config
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     config = Path(tmp) / "fit.toml"
    ...     _ = config.write_text('r-cut = 5.0\\nn_sparse = "Si:400"\\ne0 = {Si = -0.79}\\n')
    ...     read_config(config)
    {'r_cut': 5.0, 'n_sparse': {'Si': 400}, 'e0': {'Si': -0.79}}
    """
    try:
        import tomllib
    except ModuleNotFoundError:
        raise GapyError("--config needs Python 3.11 or newer (tomllib); give the settings as flags") from None

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise GapyError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as error:
        raise GapyError(f"{path}: invalid TOML ({error})") from None
    return parse_settings(raw, str(path))


def parse_settings(raw: Dict[str, Any], where: str,
                   targets: Sequence[str] = ("soap", "gap", "term", "run")) -> Dict[str, Any]:
    """Check and parse a TOML table of ``gapy fit`` settings (keys as the options without ``--``).

    ``where`` names the table in error messages (``"fit.toml"``, ``"learn.toml: [model]"``);
    only options of the given ``targets`` are accepted.
    """
    options = {option.name: option for option in FIT_OPTIONS if option.target in targets}
    settings = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in options:
            close = difflib.get_close_matches(name, options, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(options)}"
            raise GapyError(f"{where}: unknown key {key!r}{hint}")
        option = options[name]
        if isinstance(value, str) and not option.is_bool or option.target == "term" and isinstance(value, dict):
            try:
                value = option.parse(value)
            except argparse.ArgumentTypeError as error:
                raise GapyError(f"{where}: {key}: {error}") from None
        elif isinstance(value, bool) != option.is_bool or not isinstance(value, option.types):
            names = {int: "an integer", float: "a number", dict: "a table", list: "an array"}
            expected = "true or false" if option.is_bool else " or ".join(
                [names[t] for t in option.types if t in names] or ["a string"]
            )
            raise GapyError(f"{where}: {key} must be {expected}, got {value!r}")
        settings[name] = value
    return settings



def fit_as_recommended(recommendation: Recommendation, frames, sample_weight=None) -> GAPRegressor:
    """Fit the recommended model with its deltas and sigmas by the evidence and print what was chosen."""
    model = recommendation.fit(frames, sample_weight=sample_weight)
    chosen = {**model.evidence_.deltas, **model.provenance_["evidence"]["sigmas"]}
    print("chosen by the evidence" + (f" ({', '.join(recommendation.fixed)} kept as given)"
                                      if recommendation.fixed else "") + ": "
          + ", ".join(f"{name} = {value:.4g}" for name, value in chosen.items()))
    cross_validation = model.provenance_["evidence"].get("sigma_energy_cross_validation")
    if cross_validation:
        evidence = model.provenance_["evidence"]["evidence_sigma_energy"]
        print(f"sigma_energy = {cross_validation['sigma']:.4g}"
              + (" as the evidence's" if cross_validation["sigma"] == evidence
                 else f" instead of the evidence's {evidence:.4g}") + f": {cross_validation['reason']}")
    return model


def key_hint(atoms: Atoms) -> str:
    """:data:`KEY_HINT`, with the flags for the names of ``atoms`` that look like labels."""
    names = [*atoms.info, *(name for name in atoms.arrays if name not in ("numbers", "positions"))]
    flags = []
    for word, flag in KEY_FLAGS:
        matches = [name for name in names if word in name.lower()]
        if len(matches) == 1:
            flags.append(f"{flag} {matches[0]}")
    return KEY_HINT + (f" (here perhaps {' '.join(flags)})" if flags else "")


def given_hyperparameters(settings: Dict[str, Any]) -> List[str]:
    """The model hyperparameters that parsed settings set (not run settings such as label keys)."""
    return [option.name for option in FIT_OPTIONS
            if option.name in settings and option.target != "run" and option.name not in NOT_HYPERPARAMETERS]


def recommend_overrides(settings: Dict[str, Any], species: Sequence[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Parsed model settings split for :func:`gapy.recommend`.

    Returns
    -------
    overrides : dict
        ``set_params`` values of the hyperparameters given (``descriptor__r_cut``, terms).
    run_arguments : dict
        The ``GAPRegressor`` arguments that are run settings (label keys, ``random_state``
        from ``seed``, threads, ...), given.
    """
    run_like = {option.argument or option.name for option in FIT_OPTIONS if option.name in NOT_HYPERPARAMETERS}
    gap = {option.argument or option.name: settings[option.name] for option in FIT_OPTIONS
           if option.target == "gap" and option.name in settings}
    overrides = {**{f"descriptor__{option.name}": settings[option.name] for option in FIT_OPTIONS
                    if option.target == "soap" and option.name != "species" and option.name in settings},
                 **{name: value for name, value in gap.items() if name not in run_like},
                 **make_terms(settings, species)}
    return overrides, {name: value for name, value in gap.items() if name in run_like}


def model_from_settings(settings: Dict[str, Any], frames: Sequence[Atoms], verbose: bool = False) -> GAPRegressor:
    """An unfitted ``GAPRegressor`` from parsed settings; species default to those in ``frames``.

    Raises
    ------
    GapyError
        A setting SOAP or GAPRegressor refuses.
    """
    species = settings.get("species") or sorted({s for atoms in frames for s in atoms.get_chemical_symbols()},
                                                key=atomic_number)
    try:
        soap = SOAP(species, **{o.name: settings[o.name] for o in FIT_OPTIONS
                                if o.target == "soap" and o.name != "species" and o.name in settings})
        return GAPRegressor(soap, verbose=verbose, **make_terms(settings, species), **{
            o.argument or o.name: settings[o.name] for o in FIT_OPTIONS if o.target == "gap" and o.name in settings
        })
    except (TypeError, ValueError) as error:
        raise GapyError(f"invalid setting: {error}") from None


def _check_training_frames(frames: Iterable[Atoms], path: Path, model: GAPRegressor,
                           species: Optional[Sequence[str]],
                           recommended: bool = False) -> Tuple[Dict[str, int], int, int, List[int]]:
    """Labels, species and geometry of every structure, named by its index in ``path``.

    Returns the atoms of each chemical symbol found (sorted by atomic number), the
    number of structures and of atoms, and the indices of the single-atom structures
    (isolated atoms, which a streamed recommendation must see). With ``recommended`` every
    label kind the data have is fitted (a stress alone is a label), as ``recommend`` does.
    """
    fields = model._label_fields()
    needed = []  # (Labels attribute, field names) of the labels the model fits
    if model.sigma_energy is not None:
        needed.append(("energy", fields["energy"]))
    if model.sigma_force is not None:
        needed.append(("forces", fields["forces"]))
    if model.sigma_virial is not None or recommended:
        needed.append(("virial", fields["virial"]))
    known = None if species is None else {atomic_number(s) for s in species}
    found, n_frames, n_atoms, singles = {}, 0, 0, []
    stressed, energies, conflicts = [], [], []  # (name, largest stress); (name, energy, atoms of each Z); str
    lookalikes = []  # (structure, {fitted kind it lacks: a name that looks like that label})
    for k, atoms in enumerate(frames):
        name = structure_name(atoms, k)
        with about(path):
            labels, stress, conflict = _read_checked_labels(atoms, k, model)
            neighbor_pairs(atoms, 1.0, k)  # non-finite positions, bad cell, overlapping atoms
        lacking = {kind: names[0] for kind, _ in needed if getattr(labels, kind) is None
                   for names in [lookalike_labels(atoms, kind)] if names}
        if lacking:
            lookalikes.append((name, lacking))
        if stress is not None:
            stressed.append((name, stress))
        if conflict is not None:
            conflicts.append(conflict)
        if labels.energy is not None:
            energies.append((name, labels.energy, Counter(atoms.numbers.tolist())))
        if needed and all(getattr(labels, attribute) is None for attribute, _ in needed):
            fields = " or ".join(field for _, field in needed)
            raise GapyError(f"{path}: {name} has no label to fit: needs field {fields}; it has {label_keys(atoms)}: "
                            f"{key_hint(atoms)}")
        symbols = atoms.get_chemical_symbols()
        if known is not None:
            unknown = unknown_species(atoms, known)
            if unknown:
                raise GapyError(f"{path}: {name} has species {unknown} not in --species {','.join(species)}")
        for symbol in symbols:
            found[symbol] = found.get(symbol, 0) + 1
        n_frames += 1
        n_atoms += len(atoms)
        if len(atoms) == 1:
            singles.append(k)
    mixed = mixed_label_names([name for name, _ in lookalikes], [lacking for _, lacking in lookalikes],
                              [kind for kind, _ in needed],
                              {"energy": model.energy_key, "forces": model.forces_key, "virial": model.stress_key},
                              give=lambda parameter, value: f"'--{parameter.replace('_', '-')} {value}'",
                              without=lambda sigma: (f"'{'--recommend ' if recommended else ''}"
                                                     f"--{sigma.replace('_', '-')} none'"))
    if mixed is not None:  # (recommend and the fit would refuse them too, naming their arguments)
        raise GapyError(f"{path}: {mixed}")
    _warn_stress_units(path, model, stressed)
    _warn_label_conflicts(path, conflicts)
    numbers = sorted({z for _, _, counts in energies for z in counts})
    outliers = outlying_energies([energy for _, energy, _ in energies],
                                 [[counts[z] for z in numbers] for _, _, counts in energies])
    if len(outliers):
        message = outlier_message(model.energy_key, [name for name, _, _ in energies],
                                  [energy for _, energy, _ in energies],
                                  [sum(counts.values()) for _, _, counts in energies], outliers)
        warnings.warn(f"{path}: {message}", RuntimeWarning, stacklevel=3)
    return {symbol: found[symbol] for symbol in sorted(found, key=atomic_number)}, n_frames, n_atoms, singles


def _check_validation_species(frames: Sequence[Atoms], path: Path, species: Sequence[str]) -> None:
    """Refuse validation structures with a species the model is not fitted for, named by their index in ``path``."""
    known = {atomic_number(symbol) for symbol in species}
    for k, atoms in enumerate(frames):
        unknown = unknown_species(atoms, known)
        if unknown:
            raise GapyError(f"{path}: {structure_name(atoms, k)} has species {unknown}, which the training "
                            f"structures do not have (the model is fitted for {list(species)})")


def _read_checked_labels(atoms: Atoms, index: int,
                         model: GAPRegressor) -> Tuple[Labels, Optional[float], Optional[str]]:
    """``read_labels`` with the model's keys; the largest stress (eV/A^3) when it is so large
    that it is probably in another unit, else None; and what ``read_labels`` said of a label
    given twice with different values, else None (both said once for all structures)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StressUnitWarning)
        warnings.simplefilter("always", LabelConflictWarning)
        labels = read_labels(atoms, index, model.energy_key, model.forces_key, model.stress_key, model.virial_key)
    conflict = next((str(w.message) for w in caught if issubclass(w.category, LabelConflictWarning)), None)
    if any(issubclass(warning.category, StressUnitWarning) for warning in caught):
        return labels, float(np.abs(stress_from_virial(labels.virial, atoms)).max()), conflict
    return labels, None, conflict


def _warn_label_conflicts(path, conflicts: List[str]) -> None:
    """One warning for all the structures that give a label twice with different values."""
    if conflicts:
        warnings.warn(f"{path}: {len(conflicts)} structure{'s' if len(conflicts) > 1 else ''} give a label twice "
                      f"with different values, the first: {conflicts[0]}", RuntimeWarning, stacklevel=3)


def _warn_stress_units(path, model: GAPRegressor, stressed: List[Tuple[str, float]]) -> None:
    """One warning for all the structures whose stress is probably in GPa or kbar."""
    if not stressed:
        return
    largest = max(stress for _, stress in stressed)
    names = [name for name, _ in stressed]
    warnings.warn(
        f"{path}: field '{model.stress_key}' of {len(names)} structure{'s' if len(names) > 1 else ''} reaches "
        f"{largest:.3g} eV/A^3 ({largest * EV_PER_A3_IN_GPA:.3g} GPa): is it in GPa or kbar? gapy reads stresses "
        f"in eV/A^3 (ASE units; 1 eV/A^3 = 160.2 GPa): {names[:5]}{' ...' if len(names) > 5 else ''}",
        RuntimeWarning, stacklevel=3)


def _held_out(n_frames: int, fraction: float, seed: Optional[int]) -> List[int]:
    """Indices of the structures held out for validation (sorted)."""
    n_validation = int(round(fraction * n_frames))
    if not 1 <= n_validation < n_frames:
        raise GapyError(
            f"--validation-fraction {fraction} of {n_frames} structures leaves an empty training "
            f"or validation set"
        )
    order = np.random.default_rng(seed).permutation(n_frames)
    return sorted(order[:n_validation].tolist())


def _structures(source: FileSource, path: Path, indices=None) -> Iterator[Tuple[int, Atoms]]:
    """``source.structures(indices)`` with its read errors as one-line gapy errors."""
    try:
        yield from source.structures(indices)
    except DataFileError as error:
        raise GapyError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    """Run ``gapy fit``; returns the exit status.

    Stresses probably in the wrong unit get one warning for all the structures, when the
    data are checked, instead of one per structure each time the labels are read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StressUnitWarning)
        warnings.simplefilter("ignore", EnergyOutlierWarning)  # said once, with the names, by the check
        warnings.simplefilter("ignore", LabelConflictWarning)  # likewise
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    settings = read_config(args.config) if args.config else {}
    given = {option.name: getattr(args, option.name) for option in FIT_OPTIONS if hasattr(args, option.name)}
    if "validation" in given:
        settings.pop("validation_fraction", None)
    if "validation_fraction" in given:
        settings.pop("validation", None)
    settings.update(given)
    if settings.get("validation") and settings.get("validation_fraction"):
        raise GapyError("give either --validation or --validation-fraction, not both")
    if settings.get("calibrate") and not (settings.get("validation") or settings.get("validation_fraction")):
        raise GapyError("--calibrate needs validation structures: give --validation or --validation-fraction")
    run = {**_RUN_DEFAULTS, **{k: v for k, v in settings.items() if k in _RUN_DEFAULTS}}

    train_path = Path(args.train)
    output = Path(run["output"])
    check_outputs([train_path, run["validation"], args.config], models=[output])
    if not train_path.is_file():
        raise GapyError(f"{train_path}: no such file")
    stream = run["stream"] if run["stream"] is not None else train_path.stat().st_size > STREAM_ABOVE
    if stream:
        source = FileSource(train_path)
        frames = (atoms for _, atoms in _structures(source, train_path))
    else:
        frames = read_frames(train_path)
    try:
        soap_settings = {o.name: settings[o.name] for o in FIT_OPTIONS
                         if o.target == "soap" and o.name != "species" and o.name in settings}
        gap_settings = {o.argument or o.name: settings[o.name] for o in FIT_OPTIONS
                        if o.target == "gap" and o.name in settings}
        model = GAPRegressor(verbose=run["progress"], **gap_settings)
    except (TypeError, ValueError) as error:
        raise GapyError(f"invalid setting: {error}") from None
    recommended = run["recommend"]
    if recommended is None:
        given_model = given_hyperparameters(settings)
        recommended = not given_model
        if given_model:
            flags = ", ".join("--" + name.replace("_", "-") for name in given_model)
            print(f"model settings given ({flags}): the others are gapy's fixed defaults and the "
                  "deltas and sigmas are not chosen by the evidence; add --recommend to choose the others from the "
                  "data, keeping these")
    found, n_frames, n_atoms, singles = _check_training_frames(frames, train_path, model, settings.get("species"),
                                                               recommended and "sigma_virial" not in settings)
    validation, validation_name, held_out = [], None, []
    if run["validation"]:
        validation_name = Path(run["validation"])
        validation = read_frames(validation_name)
        with about(validation_name):
            checked = [(structure_name(atoms, k), *_read_checked_labels(atoms, k, model))
                       for k, atoms in enumerate(validation)]
        _warn_stress_units(validation_name, model, [(name, stress) for name, _, stress, _ in checked
                                                    if stress is not None])
        _warn_label_conflicts(validation_name, [conflict for *_, conflict in checked if conflict is not None])
        if run["calibrate"] and all(labels.energy is None and labels.forces is None and labels.virial is None
                                    for _, labels, _, _ in checked):
            raise GapyError(f"{validation_name}: no structure has an energy, forces or stress ('{model.energy_key}',"
                            f" '{model.forces_key}', '{model.stress_key}'): --calibrate compares the predicted "
                            "stds with the errors on these labels")
    elif run["validation_fraction"]:
        seed = settings.get("seed", GAP_DEFAULTS["random_state"])
        held_out = _held_out(n_frames, run["validation_fraction"], seed)
        validation_name = f"{train_path} (held out)"
        if stream:
            validation = [atoms for _, atoms in _structures(source, train_path, held_out)]
        else:
            held = set(held_out)
            frames, validation = ([a for k, a in enumerate(frames) if k not in held],
                                  [a for k, a in enumerate(frames) if k in held])
    species = settings.get("species") or list(found)
    if run["validation"]:  # before the fit, which must not be lost to them
        _check_validation_species(validation, validation_name, species)
    if run["search"]:
        if run["folds"] < 2:  # (an integer: the flag and the TOML key are checked as such)
            raise GapyError(f"folds: --search needs at least 2 folds, got {run['folds']!r}")
        grid = _search_grid(run["search"], species, "--search" if "search" in given else f"{args.config}: search")
        if stream or not recommended:
            raise GapyError("--search compares settings by refitting the recommended model on folds of the training "
                            "structures: " + ("give --no-stream (it needs them in memory)" if stream else
                                              "leave the model settings to the recommendation, or add --recommend"))
    try:
        if recommended:
            sample = frames
            if stream:
                training = sorted(set(range(n_frames)) - set(held_out))
                picks = np.random.default_rng(settings.get("seed", 0)).choice(
                    training, min(RECOMMEND_SAMPLE, len(training)), replace=False)
                picks = set(picks.tolist()) | (set(singles) - set(held_out))  # isolated atoms set e0
                sample = [atoms for _, atoms in _structures(source, train_path, sorted(picks))]
            overrides, run_arguments = recommend_overrides(settings, species)
            if run["search"]:
                template = clone(model).set_params(verbose=False)
                search = search_settings(frames, grid, template, overrides=overrides, n_folds=run["folds"],
                                         refit=False, progress=run["progress"])
                print(f"settings compared by {run['folds']}-fold cross-validation on {len(frames)} structures "
                      "(held-out RMSE, mean +- spread over folds; score: each error over the lowest of the "
                      "fold, averaged):\n" + search.summary())
                overrides.update(search.best_overrides)
            recommendation = recommend(
                sample, energy_key=model.energy_key, forces_key=model.forces_key, stress_key=model.stress_key,
                virial_key=model.virial_key, overrides=overrides, n_environments=found if stream else None,
                random_state=model.random_state)
            model = recommendation.model.set_params(**run_arguments, verbose=run["progress"])
            if settings.get("species"):
                model.set_params(descriptor__species=species)
                if model.two_body is not None:
                    model.set_params(two_body__descriptor__species=species)
        else:
            soap = SOAP(species, **soap_settings)
            model.set_params(descriptor=soap, **make_terms(settings, species))
    except (TypeError, ValueError) as error:
        raise GapyError(f"invalid setting: {error}") from None

    if held_out:
        n_atoms -= sum(len(atoms) for atoms in validation)
    print(f"training on {n_frames - len(held_out)} structures ({n_atoms} atoms) from {train_path}"
          + (", streamed" if stream else "")
          + (f"; validating on {len(validation)} from {validation_name}" if validation else ""))
    if recommended:
        print(recommendation.summary())
    else:
        print(f"{model.descriptor}\n{model_summary(model)}")
    start = time.perf_counter()
    with about(train_path):
        weights = None
        if stream and held_out:
            weights = np.ones(n_frames)
            weights[held_out] = 0.0  # left out of the fit
        data = source if stream else frames
        if recommended:
            fit_as_recommended(recommendation, data, sample_weight=weights)
        else:
            model.fit(data, sample_weight=weights)
    keys = {"energy": model.energy_key, "forces": model.forces_key,
            "virial": f"{model.stress_key} or {model.virial_key}"}
    fitted = ", ".join(f"{n} {kind} values ('{keys[kind]}')" for kind, n in model.label_counts_.items())
    terms = "".join(f" + {len(term.sparse)} of {name}" for name, term in zip(model.term_descriptors_, model.gp_.terms))
    print(f"fitted in {time.perf_counter() - start:.1f} s: {len(model.gp_.sparse)} sparse points{terms}, "
          f"{model.n_observations_} observations: {fitted}")
    validation_predictions = None
    if validation:
        with about(validation_name):
            validation_predictions = model.predict_all(validation, return_std=run["calibrate"])
    if run["calibrate"]:
        with about(validation_name):
            model.calibrate(validation)
    model.save(output)  # once, when all is done: a failure leaves the file that was there
    print(f"model written to {output}")
    if run["calibrate"]:
        factors = ", ".join(f"{quantity} x{factor:.3g}" + (
            f" with the noise weighed {model.std_noise_weight_[quantity]:.3g}" if quantity in model.std_noise_weight_
            else "") for quantity, factor in model.std_scale_.items())
        print(f"standard deviations calibrated on the validation set ({factors}); the validation table below "
              "shows them before")

    title = f"errors on the training set ({train_path})"
    if stream:
        training = sorted(set(range(n_frames)) - set(held_out))
        if len(training) > STREAM_REPORT:
            training = sorted(np.random.default_rng(0).choice(training, STREAM_REPORT, replace=False).tolist())
            title = (f"errors on a random sample of {STREAM_REPORT} of the {n_frames - len(held_out)} training "
                     f"structures ({train_path})")
        frames = [atoms for _, atoms in _structures(source, train_path, training)]
    with about(train_path):
        _, rows = evaluate(model, frames, model.predict_all(frames))
    print_table(title, rows)
    if validation:
        with about(validation_name):
            _, rows = evaluate(model, validation, validation_predictions)
        print_table(f"errors on the validation set ({validation_name})", rows)
    return 0


def model_summary(model: GAPRegressor) -> str:
    params = model.get_params(deep=False)
    shown = ("zeta", "delta", "n_sparse", "sparse_method", "sigma_energy", "sigma_force", "sigma_virial", "e0",
             "random_state") + tuple(name for name in ("two_body", "three_body", "baseline")
                                     if params[name] is not None)  # (the extra terms when set)
    return "GAPRegressor(" + ", ".join(f"{k}={params[k]!r}" for k in shown) + ")"


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy fit`` with the subcommand parsers."""
    fit = commands.add_parser(
        "fit", parents=[common], help="fit a model to labelled structures",
        description="Fit a GAP model to labelled structures and write it to a model file.\n"
                    "Settings come from the defaults, then --config, then the command line.\n"
                    "Prints the errors on the training (and validation) structures at the end.\n"
                    "Training files over 100 MiB are streamed (--stream): read structure by structure on\n"
                    "each pass, never held in memory, and refused if they change during the fit.",
        epilog="Example fit.toml:\n  r_cut = 5.0\n  n_max = 8\n  l_max = 6\n  n_sparse = 500\n"
               "  sigma_virial = 0.05\n  e0 = {Si = -0.79}\n  config_type_sigma = {Surface = {energy = 0.002}}\n"
               "  validation_fraction = 0.1\n  output = \"si.gapy\"",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("train", metavar="TRAIN.xyz", help="training structures with energies, forces and/or stresses")
    fit.add_argument("--config", metavar="FIT.toml", help="TOML file of settings, keys as the options "
                     "below without '--' and with '_' (r_cut = 5.0); command-line flags override it")
    _add_fit_options(fit)
    fit.set_defaults(run=run)

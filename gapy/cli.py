"""The ``gapy`` command line: ``gapy fit``, ``gapy eval``, ``gapy predict``, ``gapy select``,
``gapy coverage`` and ``gapy demo``.

Run ``gapy --help`` or ``gapy COMMAND --help``. Errors are reported as one line on
stderr with exit status 1 (2 for bad command-line usage); ``--debug`` shows the
traceback instead.
"""

import argparse
import csv
import difflib
import inspect
import json
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from scipy.stats import spearmanr
from ase.data import chemical_symbols
from ase.io import iread, write

from ._version import __version__
from .calculator import store_results
from .datasets import load_si
from .descriptors import SOAP
from .descriptors._radial import RADIAL_BASES
from .estimator import GAPRegressor
from .exceptions import GapyError
from .gp import VARIANCE_KINDS
from .estimator import load_model
from .labels import read_labels
from .metrics import compare, error_table, format_table, write_csv, write_json
from .sampling import SCORES, select_structures
from .sparsify import METHODS
from .structures import atomic_number, neighbor_pairs, structure_name

# ----------------------------------------------------------------- value parsers
# Each turns a command-line string (or a string in the TOML file) into a value, raising
# argparse.ArgumentTypeError with a message argparse prints after the option name.


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _number_or_none(text: str) -> Optional[float]:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _species_map(text: str, value: Callable[[str], Any]) -> Dict[str, Any]:
    """``"Si:-0.79,Ge:-1.2"`` to ``{"Si": -0.79, "Ge": -1.2}``."""
    out = {}
    for item in text.split(","):
        symbol, sep, number = item.partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected SYMBOL:VALUE pairs separated by commas, got {text!r}")
        try:
            atomic_number(symbol.strip())
            out[symbol.strip()] = value(number.strip())
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"in {item!r}: {error}") from None
    return out


def _species_list(text: str) -> List[str]:
    species = [s.strip() for s in text.split(",") if s.strip()]
    for symbol in species:
        try:
            atomic_number(symbol)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    if not species:
        raise argparse.ArgumentTypeError("expected chemical symbols separated by commas, e.g. Si,Ge")
    return species


def _n_sparse(text: str) -> Union[int, Dict[str, int]]:
    if ":" in text:
        return _species_map(text, int)
    return _integer(text)


def _e0(text: str) -> Union[float, str, Dict[str, float]]:
    if text in ("average", "isolated", "fit"):
        return text
    if ":" in text:
        return _species_map(text, float)
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, 'average', 'isolated', 'fit' or SYMBOL:VALUE pairs (Si:-0.79,Ge:-1.2), got {text!r}"
        ) from None


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}; got {text!r}")
        return text

    return parse


# --------------------------------------------------------------- fit options


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


_SOAP_DEFAULTS = _defaults(SOAP)
_GAP_DEFAULTS = _defaults(GAPRegressor)
_REAL = (int, float)

FIT_OPTIONS: Tuple[_Option, ...] = (
    _Option("species", "soap", _species_list, (list,), "chemical species the model knows, e.g. Si,Ge "
            "(default: those in the training data)", "SYMBOLS"),
    _Option("r_cut", "soap", _number, _REAL, "SOAP cutoff radius in Angstrom", "A"),
    _Option("n_max", "soap", _integer, (int,), "number of SOAP radial basis functions", "N"),
    _Option("l_max", "soap", _integer, (int,), "largest SOAP angular momentum", "L"),
    _Option("atom_sigma", "soap", _number, _REAL, "width of the Gaussian on each neighbour, Angstrom", "A"),
    _Option("cutoff_width", "soap", _number, _REAL, "width of the smooth cutoff transition below "
            "r_cut, Angstrom", "A"),
    _Option("center_weight", "soap", _number, _REAL, "weight of an atom's own Gaussian in its density", "W"),
    _Option("radial_basis", "soap", _choice(RADIAL_BASES), (), "radial functions before "
            "orthonormalisation: " + ", ".join(RADIAL_BASES), "BASIS"),
    _Option("normalize", "soap", None, (bool,), "normalise each SOAP vector"),
    _Option("zeta", "gap", _integer, (int,), "kernel exponent", "Z"),
    _Option("delta", "gap", _number, _REAL, "kernel scale in eV (prior std of a local energy)", "EV"),
    _Option("n_sparse", "gap", _n_sparse, (int, dict), "sparse points per species: a number or "
            "SYMBOL:N pairs (Si:400,Ge:200)", "N"),
    _Option("sparse_method", "gap", _choice(METHODS), (), "how sparse points are chosen: "
            + ", ".join(METHODS), "METHOD"),
    _Option("sigma_energy", "gap", _number, _REAL, "energy noise in eV/atom", "EV"),
    _Option("sigma_force", "gap", _number_or_none, _REAL, "force noise in eV/A; 'none': forces are "
            "not fitted", "EV_A"),
    _Option("sigma_virial", "gap", _number_or_none, _REAL, "virial noise in eV/atom; 'none': stress "
            "is not fitted", "EV"),
    _Option("sigma_per_atom", "gap", None, (bool,), "scale energy and virial noise by sqrt(number of "
            "atoms)"),
    _Option("config_type_sigma", "gap", _json_object, (dict,), "per-config_type noise as JSON, e.g. "
            "'{\"Surface\": {\"energy\": 0.002, \"force\": 0.1}}' (a table in the TOML file)", "JSON"),
    _Option("e0", "gap", _e0, (int, float, dict), "reference energy per atom in eV: a number, "
            "'average', 'isolated', 'fit' or SYMBOL:VALUE pairs (Si:-0.79,Ge:-1.2)", "E0"),
    _Option("sparse_jitter", "gap", _number, _REAL, "added to the diagonal of K_MM", "X"),
    _Option("energy_key", "gap", str, (), "name of the energy label", "KEY"),
    _Option("forces_key", "gap", str, (), "name of the forces label", "KEY"),
    _Option("stress_key", "gap", str, (), "name of the stress label (eV/A^3, ASE sign)", "KEY"),
    _Option("virial_key", "gap", str, (), "name of the virial label (eV), used without a stress", "KEY"),
    _Option("force_weights_key", "gap", str, (), "name of the optional per-atom force weights "
            "(atoms.arrays; 0 leaves an atom's forces out)", "KEY"),
    _Option("variance", "gap", _choice(VARIANCE_KINDS), (), "default kind of predictive variance "
            "stored in the model: " + ", ".join(VARIANCE_KINDS), "KIND"),
    _Option("block_rows", "gap", _integer, (int,), "observation rows folded into the QR factor at "
            "a time (bounds memory)", "N"),
    _Option("n_jobs", "gap", _integer, (int,), "threads (-1: all cores)", "N"),
    _Option("seed", "gap", _integer, (int,), "random seed of the sparse point selection and of "
            "--validation-fraction", "N", argument="random_state"),
    _Option("validation", "run", str, (), "structures to report validation errors on", "VAL.xyz"),
    _Option("validation_fraction", "run", _fraction, (float,), "hold out this random fraction of the "
            "training structures for validation", "F"),
    _Option("calibrate", "run", None, (bool,), "scale the predicted standard deviations to the errors "
            "on the validation structures (needs --validation or --validation-fraction)"),
    _Option("output", "run", str, (), "model file to write", "MODEL"),
    _Option("progress", "run", None, (bool,), "progress bars"),
)
_RUN_DEFAULTS = {"validation": None, "validation_fraction": None, "calibrate": False, "output": "model.gapy",
                 "progress": True}


def _default(option: _Option) -> Any:
    if option.target == "soap":
        return _SOAP_DEFAULTS.get(option.name)
    if option.target == "gap":
        return _GAP_DEFAULTS.get(option.argument or option.name)
    return _RUN_DEFAULTS[option.name]


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    groups = {
        "soap": parser.add_argument_group("SOAP descriptor"),
        "gap": parser.add_argument_group("GAP model"),
        "run": parser.add_argument_group("data and output"),
    }
    for option in FIT_OPTIONS:
        default = _default(option)
        text = option.help
        if option.parse is _number_or_none and default is None:
            text += " (default: none)"
        elif default is not None and option.name != "species":
            text += f" (default: {'on' if default is True else 'off' if default is False else default})"
        names = (["-o"] if option.name == "output" else []) + [option.flag]
        if option.is_bool:
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
    works, as does ``e0 = {Si = -0.79}``).

    Raises
    ------
    GapyError
        Missing or invalid file, an unknown key or a value of the wrong type.
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
    options = {option.name: option for option in FIT_OPTIONS}
    settings = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in options:
            close = difflib.get_close_matches(name, options, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(options)}"
            raise GapyError(f"{path}: unknown key {key!r}{hint}")
        option = options[name]
        if isinstance(value, str) and not option.is_bool:
            try:
                value = option.parse(value)
            except argparse.ArgumentTypeError as error:
                raise GapyError(f"{path}: {key}: {error}") from None
        elif isinstance(value, bool) != option.is_bool or not isinstance(value, option.types):
            names = {int: "an integer", float: "a number", dict: "a table", list: "an array"}
            expected = "true or false" if option.is_bool else " or ".join(
                [names[t] for t in option.types if t in names] or ["a string"]
            )
            raise GapyError(f"{path}: {key} must be {expected}, got {value!r}")
        settings[name] = value
    return settings


# ------------------------------------------------------------------ data files


def read_frames(path: Union[str, Path]) -> List[Atoms]:
    """All structures of a file ASE can read (extxyz for ``.xyz``), with clear errors.

    Raises
    ------
    GapyError
        The file is missing, unreadable (naming the structure that failed) or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise GapyError(f"{path}: no such file")
    frames = []
    try:
        for atoms in iread(str(path), index=":"):
            frames.append(atoms)
    except Exception as error:  # ASE raises many types for malformed files
        raise GapyError(
            f"{path}: cannot read structure {len(frames)} ({type(error).__name__}: {error})"
        ) from error
    if not frames:
        raise GapyError(f"{path}: contains no structures")
    return frames


def _check_training_frames(frames: Sequence[Atoms], path: Path, model: GAPRegressor,
                           species: Optional[Sequence[str]]) -> None:
    """Labels, species and geometry of every structure, named by its index in ``path``."""
    needed = []  # (Labels attribute, field names) of the labels the model fits
    if model.sigma_energy is not None:
        needed.append(("energy", f"'{model.energy_key}'"))
    if model.sigma_force is not None:
        needed.append(("forces", f"'{model.forces_key}'"))
    if model.sigma_virial is not None:
        needed.append(("virial", f"'{model.stress_key}' or '{model.virial_key}'"))
    known = None if species is None else {atomic_number(s) for s in species}
    for k, atoms in enumerate(frames):
        name = structure_name(atoms, k)
        try:
            labels = read_labels(atoms, k, model.energy_key, model.forces_key, model.stress_key, model.virial_key)
            neighbor_pairs(atoms, 1.0, k)  # non-finite positions, bad cell, overlapping atoms
        except GapyError as error:
            raise GapyError(f"{path}: {error}") from None
        if needed and all(getattr(labels, attribute) is None for attribute, _ in needed):
            fields = " or ".join(field for _, field in needed)
            raise GapyError(f"{path}: {name} has no label to fit: needs field {fields}")
        if known is not None:
            unknown = sorted({s for s in atoms.get_chemical_symbols() if atomic_number(s) not in known})
            if unknown:
                raise GapyError(f"{path}: {name} has species {unknown} not in --species {','.join(species)}")


def _split(frames: List[Atoms], fraction: float, seed: Optional[int]) -> Tuple[List[Atoms], List[Atoms]]:
    n_validation = int(round(fraction * len(frames)))
    if not 1 <= n_validation < len(frames):
        raise GapyError(
            f"--validation-fraction {fraction} of {len(frames)} structures leaves an empty training "
            f"or validation set"
        )
    order = np.random.default_rng(seed).permutation(len(frames))
    held_out = set(order[:n_validation].tolist())
    return ([a for k, a in enumerate(frames) if k not in held_out],
            [a for k, a in enumerate(frames) if k in held_out])


def _load_model(path: Union[str, Path]) -> GAPRegressor:
    if not Path(path).is_file():
        raise GapyError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):  # else numpy's message suggests loading it with pickle
        raise GapyError(f"{path}: not a gapy model file (model files are .npz archives written by 'gapy fit')")
    return load_model(path)


def _predict(model: GAPRegressor, frames: List[Atoms], path: Union[str, Path], return_std: bool,
             variance: Optional[str] = None) -> List[dict]:
    try:
        return model.predict_all(frames, return_std=return_std, variance=variance)
    except GapyError as error:
        raise GapyError(f"{path}: {error}") from None


def _compare(model: GAPRegressor, frames: List[Atoms], predictions: List[dict], path):
    try:
        comparisons = compare(frames, predictions, energy_key=model.energy_key, forces_key=model.forces_key,
                              stress_key=model.stress_key, virial_key=model.virial_key)
    except GapyError as error:
        raise GapyError(f"{path}: {error}") from None
    if not comparisons:
        raise GapyError(
            f"{path}: no structure has a label to compare with (fields '{model.energy_key}', "
            f"'{model.forces_key}', '{model.stress_key}')"
        )
    return comparisons


def _write_report(report_dir: Path, comparisons, rows: List[dict], info: dict, title: str,
                  plots: bool = True) -> List[Path]:
    """errors.csv, errors.json and the plots; returns the files written."""
    from .plots import parity_plot, uncertainty_plot  # matplotlib: only when plotting
    report_dir.mkdir(parents=True, exist_ok=True)
    written = [report_dir / "errors.csv", report_dir / "errors.json"]
    write_csv(rows, written[0])
    write_json({**info, "errors": rows}, written[1])
    if plots:
        for quantity, comparison in comparisons.items():
            path = report_dir / f"parity_{quantity}.png"
            parity_plot(comparison, path, title=title)
            written.append(path)
        if any(c.std is not None for c in comparisons.values()):
            path = report_dir / "uncertainty.png"
            uncertainty_plot(comparisons, path, title=title)
            written.append(path)
    return written


def _print_table(title: str, rows: List[dict]) -> None:
    print(f"\n{title}")
    print(format_table(rows))


def _calibration_hint(rows: List[dict]) -> None:
    """Say so when the predicted stds are clearly too small (uncalibrated model)."""
    overconfident = [row["quantity"] for row in rows
                     if row["config_type"] == "all" and (row.get("within_2std") or 1.0) < 0.8]
    if overconfident:
        print(f"\nthe predicted {', '.join(overconfident)} standard deviations are too small here "
              "(fewer than 80 % of the errors within 2 std); 'gapy fit --calibrate' scales them to "
              "the errors on held-out structures (docs/sampling.md)")


# -------------------------------------------------------------------- commands


def _fit_command(args: argparse.Namespace) -> int:
    settings = read_config(args.config) if args.config else {}
    given = {option.name: getattr(args, option.name) for option in FIT_OPTIONS if hasattr(args, option.name)}
    if "validation" in given:
        settings.pop("validation_fraction", None)
    if "validation_fraction" in given:
        settings.pop("validation", None)
    settings.update(given)
    if settings.get("validation") and settings.get("validation_fraction"):
        raise GapyError("give either validation or validation_fraction, not both")
    if settings.get("calibrate") and not (settings.get("validation") or settings.get("validation_fraction")):
        raise GapyError("calibrate needs validation structures: give validation or validation_fraction")
    run = {**_RUN_DEFAULTS, **{k: v for k, v in settings.items() if k in _RUN_DEFAULTS}}

    train_path = Path(args.train)
    frames = read_frames(train_path)
    species = settings.get("species") or sorted({s for atoms in frames for s in atoms.get_chemical_symbols()},
                                                key=atomic_number)
    try:
        soap = SOAP(species, **{o.name: settings[o.name] for o in FIT_OPTIONS
                                if o.target == "soap" and o.name != "species" and o.name in settings})
        model = GAPRegressor(soap, verbose=run["progress"], **{
            o.argument or o.name: settings[o.name] for o in FIT_OPTIONS if o.target == "gap" and o.name in settings
        })
    except (TypeError, ValueError) as error:
        raise GapyError(f"invalid setting: {error}") from None
    _check_training_frames(frames, train_path, model, settings.get("species"))

    validation, validation_name = [], None
    if run["validation"]:
        validation_name = Path(run["validation"])
        validation = read_frames(validation_name)
    elif run["validation_fraction"]:
        frames, validation = _split(frames, run["validation_fraction"], settings.get("seed"))
        validation_name = f"{train_path} (held out)"
    n_atoms = sum(len(atoms) for atoms in frames)
    print(f"training on {len(frames)} structures ({n_atoms} atoms) from {train_path}"
          + (f"; validating on {len(validation)} from {validation_name}" if validation else ""))
    print(f"{soap}\n{_model_summary(model)}")
    start = time.perf_counter()
    try:
        model.fit(frames)
    except GapyError as error:
        raise GapyError(f"{train_path}: {error}") from None
    print(f"fitted in {time.perf_counter() - start:.1f} s: {len(model.gp_.sparse)} sparse points, "
          f"{model.n_observations_} observations")
    output = Path(run["output"])
    model.save(output)
    print(f"model written to {output}")

    rows = error_table(_compare(model, frames, _predict(model, frames, train_path, False), train_path))
    _print_table(f"errors on the training set ({train_path})", rows)
    if validation:
        predictions = _predict(model, validation, validation_name, run["calibrate"])
        rows = error_table(_compare(model, validation, predictions, validation_name))
        _print_table(f"errors on the validation set ({validation_name})", rows)
    if run["calibrate"]:
        try:
            model.calibrate(validation)
        except GapyError as error:
            raise GapyError(f"{validation_name}: {error}") from None
        model.save(output)
        factors = ", ".join(f"{quantity} x{factor:.3g}" for quantity, factor in model.std_scale_.items())
        print(f"\nstandard deviations calibrated on the validation set ({factors}); model updated")
    return 0


def _model_summary(model: GAPRegressor) -> str:
    params = model.get_params(deep=False)
    shown = ("zeta", "delta", "n_sparse", "sparse_method", "sigma_energy", "sigma_force", "sigma_virial", "e0")
    return "GAPRegressor(" + ", ".join(f"{k}={params[k]!r}" for k in shown) + ")"


def _eval_command(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.n_jobs is not None:
        model.set_params(n_jobs=args.n_jobs)
    frames = read_frames(args.data)
    with_std = not args.no_std
    start = time.perf_counter()
    predictions = _predict(model, frames, args.data, with_std, args.variance)
    elapsed = time.perf_counter() - start
    comparisons = _compare(model, frames, predictions, args.data)
    rows = error_table(comparisons)
    print(f"{len(frames)} structures from {args.data} predicted in {elapsed:.1f} s"
          + (f" (with {args.variance or model.variance} standard deviations)" if with_std else ""))
    _print_table(f"errors of {args.model} on {args.data}", rows)
    if not model.std_scale_ or (args.variance or model.variance) != model.variance:
        _calibration_hint(rows)
    if args.output:
        info = {
            "gapy_version": __version__,
            "model": str(args.model),
            "data": str(args.data),
            "n_structures": len(frames),
            "n_atoms": int(sum(len(atoms) for atoms in frames)),
            "variance": (args.variance or model.variance) if with_std else None,
        }
        written = _write_report(Path(args.output), comparisons, rows, info, title=Path(args.data).name,
                                plots=not args.no_plots)
        print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def _predict_command(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.n_jobs is not None:
        model.set_params(n_jobs=args.n_jobs)
    frames = read_frames(args.input)
    predictions = _predict(model, frames, args.input, args.std, args.variance)
    for atoms, result in zip(frames, predictions):
        store_results(atoms, result)
    write(args.output, frames, format="extxyz")
    print(f"predictions for {len(frames)} structures written to {args.output}")
    return 0


def _select_command(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.n_jobs is not None:
        model.set_params(n_jobs=args.n_jobs)
    frames = read_frames(args.pool)
    try:
        selection = select_structures(model, frames, args.n, score=args.score, threshold=args.threshold,
                                      diverse=not args.no_diversity, variance=args.variance)
    except GapyError as error:
        raise GapyError(f"{args.pool}: {error}") from None
    unit = SCORE_UNITS[args.score]
    scores = selection.scores
    print(f"{len(frames)} structures in {args.pool}: {args.score} uncertainty median "
          f"{np.median(scores):.4g}, max {scores.max():.4g} {unit}")
    if len(selection.indices) == 0:
        print(f"no structure scores above the threshold {args.threshold} {unit}; nothing written")
        return 0
    print(f"\n{'score (' + unit + ')':>14}  structure (index in the pool)")
    chosen = []
    for k in selection.indices:
        atoms = frames[k].copy()
        atoms.calc = None  # the selection is to be labelled: old labels would mislead
        atoms.info["uncertainty_score"] = float(scores[k])
        atoms.info["pool_index"] = int(k)
        chosen.append(atoms)
        print(f"{scores[k]:>14.4g}  {structure_name(frames[k], k)}")
    write(args.output, chosen, format="extxyz")
    print(f"\n{len(chosen)} structures written to {args.output} (info: uncertainty_score, pool_index)")
    return 0


#: Unit of each uncertainty score of ``gapy select``.
SCORE_UNITS = {"forces": "eV/A", "energy": "eV/atom", "energies": "eV"}

def _coverage_command(args: argparse.Namespace) -> int:
    from .coverage import CoverageMap
    from .plots import coverage_plot  # matplotlib: only when plotting

    if args.color == "std" and not (args.model and args.new):
        raise GapyError("--color std needs a model (--model) and new structures (NEW.xyz)")
    soap_flags = {name: getattr(args, name) for name in ("species", "r_cut", "n_max", "l_max", "atom_sigma")
                  if getattr(args, name) is not None}
    train = read_frames(args.train)
    new = read_frames(args.new) if args.new else []
    if args.model:
        if soap_flags:
            flags = ", ".join("--" + name.replace("_", "-") for name in soap_flags)
            raise GapyError(f"give either --model or SOAP settings ({flags}), not both")
        model = _load_model(args.model)
        descriptor = model.descriptor_
        zeta = model.zeta if args.zeta is None else args.zeta
    else:
        species = soap_flags.pop("species", None) or sorted(
            {s for atoms in train + new for s in atoms.get_chemical_symbols()}, key=atomic_number)
        try:
            descriptor = SOAP(species, **soap_flags)
        except (TypeError, ValueError) as error:
            raise GapyError(f"invalid setting: {error}") from None
        zeta = 4 if args.zeta is None else args.zeta
    coverage = CoverageMap(descriptor, n_components=args.n_components, level=args.level, species=args.center,
                           zeta=zeta, max_reference=args.max_reference, random_state=args.seed, n_jobs=args.n_jobs)
    start = time.perf_counter()
    try:
        coverage.fit(train)
    except GapyError as error:
        raise GapyError(f"{args.train}: {error}") from None
    ratio = coverage.pca_.explained_variance_ratio_
    rows = "environments" if args.level == "atoms" else "structures"
    distance = coverage.train_distance_
    print(f"coverage map of {len(distance)} training {rows} from {args.train}; {descriptor}, zeta={zeta}; "
          + ", ".join(f"PC{i + 1} {100 * r:.1f} %" for i, r in enumerate(ratio)) + " of the variance")
    if len(coverage.reference_) < len(distance):
        print(f"PCA and distances use a random subsample of {len(coverage.reference_)} training {rows} "
              f"(--max-reference {args.max_reference})")
    finite = distance[np.isfinite(distance)]
    median = f"{np.median(finite):.4f}" if finite.size else "-"
    print(f"training nearest-neighbour kernel distance (leave one out): median {median}, "
          f"max {coverage.threshold_:.4f}")

    table = [("train", coverage.row_index_, coverage.row_species_, coverage.config_type_, coverage.embedding_,
              distance)]
    new_xy = new_distance = new_std = None
    if new:
        try:
            new_xy, new_distance = coverage.transform(new, return_distance=True)
            index = coverage.row_index(new)
        except GapyError as error:
            raise GapyError(f"{args.new}: {error}") from None
        numbers = np.array([new[k].numbers[i] if i >= 0 else 0 for k, i in index], dtype=np.int64)
        config = np.array([str(new[k].info.get("config_type", "(none)")) for k in index[:, 0]], dtype=str)
        table.append(("new", index, numbers, config, new_xy, new_distance))
        beyond = ~(new_distance <= coverage.threshold_)
        print(f"{len(new_distance)} new {rows} from {args.new}: kernel distance to the training set median "
              f"{np.median(new_distance):.4f}, max {np.max(new_distance):.4f}; {beyond.mean():.1%} "
              f"({beyond.sum()}) beyond the largest training nearest-neighbour distance {coverage.threshold_:.4f}")
        for row in np.argsort(-new_distance, kind="stable")[:min(5, int(beyond.sum()))]:
            k, i = index[row]
            where = f"structure {k}" + (f" atom {i} ({chemical_symbols[numbers[row]]})" if i >= 0 else "")
            print(f"  {where}, config_type={config[row]}: {new_distance[row]:.4f}")
        if args.model:
            new_std = _energy_std_of_rows(model, new, index, args.new)
            correlation = spearmanr(new_distance, new_std).correlation
            print(f"model's local-energy std of the new {rows}: median {np.median(new_std):.4g}, max "
                  f"{new_std.max():.4g} eV/atom; rank correlation with the distance {correlation:.2f}")
    print(f"done in {time.perf_counter() - start:.1f} s")

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = output / "coverage.csv", output / "coverage.png"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["set", "structure", "atom", "species", "config_type"]
                        + [f"pc{i + 1}" for i in range(coverage.n_components)] + ["distance", "energy_std"])
        for name, index, numbers, config, xy, dist in table:
            std = new_std if name == "new" and new_std is not None else None
            for row in range(len(index)):
                writer.writerow([name, int(index[row, 0]), int(index[row, 1]),
                                 chemical_symbols[numbers[row]] if numbers[row] else "", config[row]]
                                + [f"{x:.6g}" for x in xy[row]] + [f"{dist[row]:.6g}"]
                                + [f"{std[row]:.6g}" if std is not None else ""])
    written = [csv_path]
    if coverage.n_components >= 2:
        title = Path(args.train).name + (f" and {Path(args.new).name}" if new else "")
        if args.color == "std":
            values, label = new_std, "model's local-energy std (eV/atom)"
        else:
            values, label = new_distance, f"kernel distance to the training set (zeta={zeta})"
        coverage_plot(coverage.embedding_, png_path, config_type=coverage.config_type_, new=new_xy,
                      values=values, value_label=label, explained_variance_ratio=ratio, title=title)
        written.append(png_path)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _energy_std_of_rows(model: GAPRegressor, frames: List[Atoms], index: np.ndarray, path) -> np.ndarray:
    """The model's local-energy std (eV) of each (structure, atom) row; per atom for whole structures."""
    try:
        predictions = model.predict_all(frames, return_std=True, properties=("energy", "energies"))
    except GapyError as error:
        raise GapyError(f"{path}: {error}") from None
    return np.array([predictions[k]["energies_std"][i] if i >= 0
                     else predictions[k]["energy_std"] / len(frames[k]) for k, i in index])


#: SOAP and GAP settings of ``gapy demo``.
DEMO_SOAP = dict(species=["Si"], r_cut=5.4, n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
DEMO_GAP = dict(zeta=4, n_sparse=500, sigma_energy=0.005, sigma_force=0.05, sigma_virial=0.05,
                e0={"Si": -0.79}, random_state=0)


def run_demo(
    output: Union[str, Path] = "gapy-demo",
    *,
    n_jobs: int = -1,
    descriptor: Optional[SOAP] = None,
    n_sparse: int = DEMO_GAP["n_sparse"],
    train: Optional[List[Atoms]] = None,
    test: Optional[List[Atoms]] = None,
    progress: bool = True,
) -> List[dict]:
    """Fit the bundled Si data, evaluate on the bundled test set, write model and plots.

    Parameters
    ----------
    output : str or Path, default="gapy-demo"
        Directory for ``model.gapy``, ``errors.csv``, ``errors.json`` and the plots.
    n_jobs : int, default=-1
        Threads (all cores).
    descriptor : SOAP, optional
        Default :data:`DEMO_SOAP`; a smaller one makes a quick check.
    n_sparse : int, default=500
    train, test : list of ase.Atoms, optional
        Default :func:`gapy.datasets.load_si` ``("train")`` and ``("test")``.
    progress : bool, default=True
        Progress bars.

    Returns
    -------
    list of dict
        The test-set rows of :func:`gapy.metrics.error_table`.
    """
    start = time.perf_counter()
    output = Path(output)
    train = load_si("train") if train is None else train
    test = load_si("test") if test is None else test
    descriptor = SOAP(**DEMO_SOAP) if descriptor is None else descriptor
    model = GAPRegressor(descriptor, **{**DEMO_GAP, "n_sparse": n_sparse}, n_jobs=n_jobs, verbose=progress)
    print(f"gapy {__version__} demo: Si, mlearn data (Zuo et al., J. Phys. Chem. A 124, 731 (2020))")
    print(f"training on {len(train)} structures ({sum(len(a) for a in train)} atoms), "
          f"testing on {len(test)} ({sum(len(a) for a in test)} atoms)")
    print(f"{descriptor}\n{_model_summary(model)}")
    model.fit(train)
    fitted = time.perf_counter()
    print(f"fitted in {fitted - start:.1f} s")
    output.mkdir(parents=True, exist_ok=True)
    model.save(output / "model.gapy")
    predictions = model.predict_all(test, return_std=True)
    comparisons = compare(test, predictions)
    rows = error_table(comparisons)
    print(f"test set predicted with {model.variance} standard deviations in {time.perf_counter() - fitted:.1f} s")
    _print_table("errors on the bundled test set", rows)
    _calibration_hint(rows)
    info = {"gapy_version": __version__, "model": str(output / "model.gapy"), "data": "gapy.datasets.load_si('test')",
            "n_structures": len(test), "n_atoms": int(sum(len(a) for a in test)), "variance": model.variance}
    written = _write_report(output, comparisons, rows, info, title="bundled Si test set")
    print(f"\nwrote {output / 'model.gapy'}, " + ", ".join(str(p) for p in written))
    print(f"total {time.perf_counter() - start:.1f} s. Next: gapy eval {output / 'model.gapy'} YOUR_DATA.xyz -o report/")
    return rows


def _demo_command(args: argparse.Namespace) -> int:
    run_demo(args.output, n_jobs=args.n_jobs, progress=args.progress)
    return 0


# ---------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_prediction_options(parser: argparse.ArgumentParser) -> None:
    """``--variance`` and ``--n-jobs`` of the commands that predict with a model file."""
    parser.add_argument("--variance", type=_choice(VARIANCE_KINDS), metavar="KIND",
                        help="kind of variance: " + ", ".join(VARIANCE_KINDS) + " (default: the model's)")
    parser.add_argument("--n-jobs", type=_integer, metavar="N", help="threads (default: the model's n_jobs)")


def build_parser() -> argparse.ArgumentParser:
    """The ``gapy`` argument parser with its subcommands."""
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = _Parser(
        prog="gapy",
        description="Gaussian Approximation Potentials: fit SOAP/GAP models to DFT data, evaluate "
                    "them and predict energies, forces, stresses and their uncertainties.",
        epilog="Start with 'gapy demo'. Structures are read with ase.io (extxyz for .xyz files); labels "
               "are the energy (eV), forces (eV/A) and stress (eV/A^3) ASE reads from them, and "
               "atoms.info['config_type'] groups the error tables.",
    )
    parser.add_argument("--version", action="version", version=f"gapy {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit", parents=[common], help="fit a model to labelled structures",
        description="Fit a GAP model to labelled structures and write it to a model file.\n"
                    "Settings come from the defaults, then --config, then the command line.\n"
                    "Prints the errors on the training (and validation) structures at the end.",
        epilog="Example fit.toml:\n  r_cut = 5.0\n  n_max = 8\n  l_max = 6\n  n_sparse = 500\n"
               "  sigma_virial = 0.05\n  e0 = {Si = -0.79}\n  config_type_sigma = {Surface = {energy = 0.002}}\n"
               "  validation_fraction = 0.1\n  output = \"si.gapy\"",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("train", metavar="TRAIN.xyz", help="training structures with energies, forces and/or stresses")
    fit.add_argument("--config", metavar="FIT.toml", help="TOML file of settings, keys as the options "
                     "below without '--' and with '_' (r_cut = 5.0); command-line flags override it")
    _add_fit_options(fit)
    fit.set_defaults(run=_fit_command)

    evaluate = commands.add_parser(
        "eval", parents=[common], help="errors of a model on labelled structures, with plots",
        description="RMSE and MAE of energies (meV/atom), forces (eV/A) and stresses (GPa), over all "
                    "structures and per config_type; with -o also CSV, JSON, parity plots and a plot of "
                    "the predicted standard deviation against the absolute error.",
    )
    evaluate.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit'")
    evaluate.add_argument("data", metavar="TEST.xyz", help="labelled structures")
    evaluate.add_argument("-o", "--output", metavar="REPORT_DIR", help="directory for errors.csv, errors.json "
                          "and the PNG plots (default: print the table only)")
    evaluate.add_argument("--no-std", action="store_true", help="skip the standard deviations and the "
                          "uncertainty plot (faster)")
    evaluate.add_argument("--no-plots", action="store_true", help="write CSV and JSON only")
    _add_prediction_options(evaluate)
    evaluate.set_defaults(run=_eval_command)

    predict = commands.add_parser(
        "predict", parents=[common], help="write predictions (and uncertainties) to extxyz",
        description="Predict energies, per-atom energies, forces and (periodic structures) stresses and "
                    "write them as extxyz (eV, eV/A, eV/A^3); labels in the input are replaced. With "
                    "--std, energy_std and stress_std are written per structure, energies_std and "
                    "forces_std per atom, in the same units.",
    )
    predict.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit'")
    predict.add_argument("input", metavar="IN.xyz", help="structures")
    predict.add_argument("-o", "--output", metavar="OUT.xyz", required=True, help="extxyz file to write")
    predict.add_argument("--std", action="store_true", help="also write standard deviations")
    _add_prediction_options(predict)
    predict.set_defaults(run=_predict_command)

    select = commands.add_parser(
        "select", parents=[common], help="choose uncertain, diverse structures to label next",
        description="Score every structure of a pool (e.g. MD snapshots) by the model's predicted "
                    "uncertainty and write the N most worth a reference (DFT) calculation: uncertain, "
                    "and different from each other (uncertainty-weighted farthest-point sampling on "
                    "structure fingerprints). Labels in the pool are dropped from the output.",
    )
    select.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit'")
    select.add_argument("pool", metavar="POOL.xyz", help="candidate structures")
    select.add_argument("-n", type=_integer, required=True, metavar="N", help="number of structures to choose")
    select.add_argument("-o", "--output", metavar="OUT.xyz", required=True, help="extxyz file to write")
    select.add_argument("--score", type=_choice(SCORES), default="forces", metavar="KIND",
                        help="forces: largest force std (eV/A, default); energy: energy std per atom "
                             "(eV/atom); energies: largest local-energy std (eV, fastest)")
    select.add_argument("--threshold", type=_number, metavar="VALUE",
                        help="only structures scoring above VALUE (units of --score) are chosen")
    select.add_argument("--no-diversity", action="store_true",
                        help="take the N highest scores, even if they are near-copies")
    _add_prediction_options(select)
    select.set_defaults(run=_select_command)

    coverage = commands.add_parser(
        "coverage", parents=[common], help="map how new structures sit in the training set (PCA, distances)",
        description="PCA map of the SOAP vectors of the training environments (or structures) and the "
                    "kernel distance sqrt(2 - 2 (q.x)^zeta) of each environment to its nearest training "
                    "environment of the same species. Writes coverage.csv (PCA coordinates and distances; "
                    "for training rows the leave-one-out distance) and coverage.png (with two or more "
                    "components), and prints the fraction of new environments farther than the largest "
                    "training nearest-neighbour distance.",
    )
    coverage.add_argument("train", metavar="TRAIN.xyz", help="training structures")
    coverage.add_argument("new", metavar="NEW.xyz", nargs="?", help="structures to place on the map (e.g. from MD)")
    coverage.add_argument("-o", "--output", default="coverage", metavar="DIR",
                          help="output directory (default: coverage)")
    coverage.add_argument("--model", metavar="MODEL", help="take the descriptor and zeta from a model file "
                          "written by 'gapy fit' (instead of the SOAP options)")
    coverage.add_argument("--species", type=_species_list, metavar="SYMBOLS", help="SOAP species, e.g. Si,Ge "
                          "(default: those in the data)")
    coverage.add_argument("--r-cut", type=_number, metavar="A", help="SOAP cutoff radius in Angstrom "
                          f"(default: {_SOAP_DEFAULTS['r_cut']})")
    coverage.add_argument("--n-max", type=_integer, metavar="N", help="SOAP radial basis functions "
                          f"(default: {_SOAP_DEFAULTS['n_max']})")
    coverage.add_argument("--l-max", type=_integer, metavar="L", help="largest SOAP angular momentum "
                          f"(default: {_SOAP_DEFAULTS['l_max']})")
    coverage.add_argument("--atom-sigma", type=_number, metavar="A", help="SOAP Gaussian width in Angstrom "
                          f"(default: {_SOAP_DEFAULTS['atom_sigma']})")
    coverage.add_argument("--zeta", type=_integer, metavar="Z", help="kernel exponent of the distance "
                          "(default: the model's, else 4)")
    coverage.add_argument("--level", type=_choice(("atoms", "structures")), default="atoms", metavar="LEVEL",
                          help="map atomic environments or whole structures (mean SOAP vector): atoms, "
                          "structures (default: atoms)")
    coverage.add_argument("--center", metavar="SYMBOL", help="only environments centred on this species")
    coverage.add_argument("--n-components", type=_integer, default=2, metavar="N",
                          help="principal components written to the CSV (default: 2)")
    coverage.add_argument("--max-reference", type=_integer, default=20000, metavar="N",
                          help="cap on training rows per species for the PCA and distances; larger sets "
                          "are subsampled at random (default: 20000)")
    coverage.add_argument("--seed", type=_integer, metavar="N", help="random seed of that subsample")
    coverage.add_argument("--n-jobs", type=_integer, default=1, metavar="N", help="threads (default: 1)")
    coverage.add_argument("--color", type=_choice(("distance", "std")), default="distance", metavar="BY",
                          help="colour the new points by their distance to the training set (default) or by "
                               "the model's local-energy std (needs --model)")
    coverage.set_defaults(run=_coverage_command)

    demo = commands.add_parser(
        "demo", parents=[common], help="fit and evaluate the bundled Si data",
        description="Fit a Si model (SOAP r_cut=5.4 A, n_max=8, l_max=8; zeta=4, 500 sparse points) to "
                    "the bundled mlearn training data, evaluate it on the bundled test set and write "
                    "the model, error tables and plots. Takes 30-60 s on two cores.",
    )
    demo.add_argument("-o", "--output", default="gapy-demo", metavar="DIR",
                      help="output directory (default: gapy-demo)")
    demo.add_argument("--n-jobs", type=_integer, default=-1, metavar="N", help="threads (default: -1, all cores)")
    demo.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                      help="progress bars (default: on)")
    demo.set_defaults(run=_demo_command)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``gapy`` console script; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"gapy {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line for users, the traceback with --debug
        if args.debug:
            raise
        message = str(error) or type(error).__name__
        if not isinstance(error, (GapyError, OSError, ValueError)):
            message = f"{type(error).__name__}: {message} (run with --debug for the traceback)"
        print(f"gapy {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

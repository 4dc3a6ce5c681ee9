"""What every ``gapy`` command shares: value parsers, reading files, checking outputs
before the work starts, and naming the file in error messages."""

import argparse
import os
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Union

from ase import Atoms
from ase.data import chemical_symbols
from ase.io import iread

from ..baseline import ShortDistanceWarning, closer_than_training
from ..estimator import GAPRegressor, load_model
from ..exceptions import GapyError
from ..gp import VARIANCE_KINDS
from ..io.frames import DB_SUFFIXES, EXTXYZ_SUFFIXES, FileSource, check_extxyz
from ..io.model import is_model_file
from ..metrics import format_table
from ..structures import atomic_number, structure_name

PathLike = Union[str, Path]

# ----------------------------------------------------------------- value parsers
# Each turns a command-line string (or a string in a TOML file) into a value, raising
# argparse.ArgumentTypeError with a message argparse prints after the option name.


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def number_or_none(text: str) -> Optional[float]:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def species_map(text: str, value: Callable[[str], Any]) -> Dict[str, Any]:
    """``"Si:-0.79,Ge:-1.2"`` to ``{"Si": -0.79, "Ge": -1.2}``."""
    out = {}
    for item in text.split(","):
        symbol, sep, value_text = item.partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected SYMBOL:VALUE pairs separated by commas, got {text!r}")
        try:
            atomic_number(symbol.strip())
            out[symbol.strip()] = value(value_text.strip())
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"in {item!r}: {error}") from None
    return out


def species_list(text: str) -> List[str]:
    species = [s.strip() for s in text.split(",") if s.strip()]
    for symbol in species:
        try:
            atomic_number(symbol)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    if not species:
        raise argparse.ArgumentTypeError("expected chemical symbols separated by commas, e.g. Si,Ge")
    return species


def choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}; got {text!r}")
        return text

    return parse


def add_prediction_options(parser: argparse.ArgumentParser) -> None:
    """``--variance`` and ``--n-jobs`` of the commands that predict with a model file."""
    parser.add_argument("--variance", type=choice(VARIANCE_KINDS), metavar="KIND",
                        help="kind of variance: " + ", ".join(VARIANCE_KINDS) + " (default: the model's)")
    parser.add_argument("--n-jobs", type=integer, metavar="N", help="threads (default: the model's n_jobs)")


# ------------------------------------------------------------------ files


@contextmanager
def about(path: Optional[PathLike]) -> Iterator[None]:
    """Prefix gapy errors raised inside the block with the file they concern."""
    try:
        yield
    except GapyError as error:
        if path is None or str(error).startswith(f"{path}:"):
            raise
        raise GapyError(f"{path}: {error}") from None


def read_frames(path: PathLike) -> List[Atoms]:
    """All structures of a file ASE can read (extxyz for ``.xyz``), with clear errors; an ASE
    database as :class:`gapy.io.frames.FileSource` streams it (rows' key-value pairs in ``info``,
    their ``data`` in ``info`` or ``arrays``), so that a file gives the same structures either way.

    Raises
    ------
    GapyError
        The file is missing, unreadable (naming the structure that failed) or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise GapyError(f"{path}: no such file")
    if is_model_file(path):
        raise GapyError(f"{path}: is a gapy model file, not structures")
    if path.suffix.lower() in EXTXYZ_SUFFIXES:
        check_extxyz(path)  # (a blank line ASE would stop at; a stress ASE would symmetrise)
    if path.suffix.lower() in DB_SUFFIXES:  # as streamed: key-value pairs and data in info and arrays (ASE's
        source = FileSource(path, format="db")  # reader drops them)
        try:
            return [atoms for _, atoms in source.structures()]
        finally:
            source.close()
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


def read_model(path: PathLike, n_jobs: Optional[int] = None) -> GAPRegressor:
    """A model file, with one-line errors; ``n_jobs`` overrides the stored threads."""
    if Path(path).is_dir():
        raise GapyError(f"{path}: is a directory, not a model file")
    if not Path(path).is_file():
        raise GapyError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise GapyError(f"{path}: not a gapy model file (model files are .npz archives written by 'gapy fit')")
    model = load_model(path)
    if n_jobs is not None:
        model.set_params(n_jobs=n_jobs)
    return model


def check_model_frames(model: GAPRegressor, frames: Sequence[Atoms], path: PathLike) -> None:
    """Refuse structures with a species the model was not fitted for, with the command-line fix; warn of
    structures with atoms closer than any pair of the training data.

    Raises
    ------
    GapyError
        Names the first such structure, its unknown species and the model's species.

    Warns
    -----
    gapy.baseline.ShortDistanceWarning
        Names the first three such structures, their closest pair and the training's.
    """
    known = set(model.descriptor_.atomic_numbers.tolist())
    for k, atoms in enumerate(frames):
        unknown = unknown_species(atoms, known)
        if unknown:
            raise GapyError(
                f"{path}: {structure_name(atoms, k)} has species {unknown} that the model does not know (it was "
                f"fitted for {[chemical_symbols[z] for z in sorted(known)]}): refit it with 'gapy fit' on training "
                f"structures that contain {', '.join(unknown)} (or name them with --species)"
            )
    close = [f"{structure_name(atoms, k)}: {pair}" for k, atoms in enumerate(frames)
             for pair in [closer_than_training(atoms, getattr(model, "pair_shortest_", {}), index=k)] if pair]
    if close:
        core = model.baseline_ is not None or bool(model.gp_.terms)
        warnings.warn(
            f"{path}: {len(close)} structure{'s have' if len(close) > 1 else ' has'} atoms closer than any pair of "
            f"the training data ({'; '.join(close[:3])}{'; ...' if len(close) > 3 else ''}): the model extrapolates "
            "there" + ("" if core else "; without a repulsive core (ZBL baseline or 2-body term: 'gapy fit' "
                       "chooses them unless given model settings) its predictions and stds there can be far off"),
            ShortDistanceWarning, stacklevel=2)


def unknown_species(atoms: Atoms, known: Set[int]) -> List[str]:
    """The chemical symbols of ``atoms`` whose atomic numbers are not in ``known``, in the order of the table."""
    return sorted({symbol for symbol, z in zip(atoms.get_chemical_symbols(), atoms.numbers.tolist())
                   if z not in known}, key=atomic_number)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(inputs: Sequence[Optional[PathLike]], files: Sequence[Optional[PathLike]] = (),
                  directories: Sequence[Optional[PathLike]] = (), models: Sequence[Optional[PathLike]] = (),
                  structures: Sequence[Optional[PathLike]] = ()) -> None:
    """Check every output before any work: never an input, and writable.

    Output files get their parent directories created; output directories are created.
    A path that would overwrite an input (the same file, through any path) is refused, and
    so is a model written over an existing file that is not a gapy model (``models``: a
    typo for ``--validation test.xyz`` must not replace the test set) or other output
    (``files``, ``structures``) written over an existing gapy model. ``structures`` are
    written as extended XYZ: a name whose suffix says another format is refused.

    Raises
    ------
    GapyError
        An output is an input, would replace a file of the other kind, cannot be created
        or written, or names a format gapy does not write.
    """
    files = list(files) + list(structures)
    sources = [Path(p) for p in inputs if p is not None]
    for output in [Path(p) for p in list(files) + list(models) + list(directories) if p is not None]:
        for source in sources:
            if output.resolve() == source.resolve() or _same_file(output, source):
                raise GapyError(f"{output}: the output would overwrite the input {source}; choose another name")
    for output in [Path(p) for p in models if p is not None]:
        if output.is_file() and not is_model_file(output):
            raise GapyError(f"{output}: exists and is not a gapy model file; a model is written only over a "
                            "model: remove the file or choose another name")
    for output in [Path(p) for p in files if p is not None]:
        if output.is_file() and is_model_file(output):
            raise GapyError(f"{output}: is a gapy model file and would be replaced; choose another name")
    for output in [Path(p) for p in structures if p is not None]:
        if _ase_format(output) not in (None, "extxyz", "xyz"):
            raise GapyError(f"{output}: structures are written as extended XYZ; give a name ending in "
                            f"{' or '.join(EXTXYZ_SUFFIXES)} (ase convert turns it into other formats)")
    files = list(files) + list(models)
    for output in [Path(p) for p in files if p is not None]:
        if output.is_dir():
            raise GapyError(f"{output}: is a directory; give a file name")
        _writable_directory(output.parent)
    for output in [Path(p) for p in directories if p is not None]:
        if output.exists() and not output.is_dir():
            raise GapyError(f"{output}: exists and is not a directory")
        _writable_directory(output)


def _ase_format(path: Path) -> Optional[str]:
    """The file format ASE would take ``path``'s name for (``out.traj``: ``"traj"``), None for a name
    it does not know (``pred_1.5GPa``)."""
    from ase.io.formats import filetype, ioformats

    try:
        name = filetype(str(path), read=False)
    except Exception:  # (ASE's UnknownFileTypeError and the like)
        return None
    return name if name in ioformats else None


def _writable_directory(directory: Path) -> None:
    directory = directory if str(directory) else Path(".")
    blocking = next((parent for parent in [directory, *directory.parents] if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise GapyError(f"{directory}: cannot write there ({blocking} is a file, not a directory)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise GapyError(f"{directory}: cannot write there ({error.strerror or error})") from None


def print_table(title: str, rows: List[dict]) -> None:
    print(f"\n{title}")
    print(format_table(rows))


#: :func:`calibration_hint` calls stds far too large when the RMS of error / std is below this (stds five times the
#: errors: the default stds of a few small molecules, 20-80 times their errors, passed as "100 % within 2 std").
OVERCAUTIOUS_Z_RMS = 0.2


def calibration_hint(rows: List[dict]) -> None:
    """Say so when the predicted stds are clearly too small or far too large (uncalibrated model)."""
    overall = [row for row in rows if row["config_type"] == "all"]
    overconfident = [row["quantity"] for row in overall if (row.get("within_2std") or 1.0) < 0.8]
    overcautious = [f"{row['quantity']} {row['z_rms']:.2g}" for row in overall
                    if row.get("z_rms") is not None and row["z_rms"] < OVERCAUTIOUS_Z_RMS]
    if overconfident:
        print(f"\nthe predicted {', '.join(overconfident)} standard deviations are too small here "
              "(fewer than 80 % of the errors within 2 std); 'gapy fit --calibrate' scales them to "
              "the errors on held-out structures (docs/sampling.md)")
    if overcautious:
        print(f"\nthe predicted standard deviations are far larger than the errors here (RMS of error / std: "
              f"{', '.join(overcautious)}): within 2 std says little; 'gapy fit --calibrate' fits them to the "
              "errors on held-out structures (docs/gp.md)")

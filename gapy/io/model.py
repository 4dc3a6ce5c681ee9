"""Model files: one ``.npz`` archive with a JSON header, never pickle.

A model is written as a *state*: a JSON-able ``header`` dict (file format version, gapy
version, hyperparameters, descriptor settings, ``e0``, ...) and named arrays (see
:meth:`gapy.GAPRegressor.to_state`). The archive holds the arrays, the header as a JSON
string, and SHA-256 checksums of every array and of the header itself. Writing is atomic:
the archive is built in memory, written to a temporary file in the same directory and
moved over the target, so a failed or killed save leaves any previous file intact.
Reading checks everything and raises :class:`~gapy.exceptions.ModelFileError` with the
reason; this module knows nothing about estimators (:mod:`gapy.io.estimator_state` turns a
:class:`~gapy.GAPRegressor` into a state and back).
"""

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np

from .._version import __version__
from ..exceptions import ModelFileError
from .atomic import write_atomically

FORMAT = "gapy-model"
FORMAT_VERSION = 4
#: Versions this gapy reads: 2 added ``std_scale`` (``GAPRegressor.calibrate``), 3 the
#: checksum of the header, 4 the extra terms (``two_body``, ``three_body``; models
#: without them are still written as version 3).
READABLE_VERSIONS = (1, 2, 3, 4)
_HEADER_CHECKSUM = "header_sha256"


def _checksum(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def jsonable(value):
    """``value`` with numpy scalars and arrays as Python numbers and lists, keys as str.

    Parameters
    ----------
    value : object
        Nested dicts, lists and tuples of numbers, strings, ``None`` and numpy values.

    Returns
    -------
    object
        The same structure with only JSON types (tuples become lists).

    Raises
    ------
    TypeError
        A value JSON cannot represent (named with its type).

    Examples
    --------
    >>> from gapy.io.model import jsonable
    >>> import numpy as np
    >>> jsonable({14: np.float64(-1.5), "shape": (2, np.int64(3)), "x": np.zeros(2)})
    {'14': -1.5, 'shape': [2, 3], 'x': [0.0, 0.0]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} ({value!r}) in a model file")


def write_state(header: dict, arrays: Dict[str, np.ndarray], path: Union[str, Path], *,
                format_version: int = FORMAT_VERSION) -> None:
    """Write a model state to ``path`` atomically.

    Parameters
    ----------
    header : dict
        JSON-able settings; ``format``, ``format_version``, ``gapy_version`` and the
        checksums are added.
    arrays : dict of str to ndarray
        Named arrays (names other than ``"header"`` and ``"header_sha256"``); stored
        without pickle, so object arrays cannot be stored.
    path : str or Path
        File to write, usually ending in ``.npz``; its directory must exist. A new
        file gets the permissions of the umask, a replaced file keeps its own.
    format_version : int, default=FORMAT_VERSION
        Version written in the header, one of :data:`READABLE_VERSIONS` from 3 on (the
        oldest that holds what the model has, so that older gapy versions read it).

    Raises
    ------
    TypeError
        A header value cannot be stored (before anything is written).
    ValueError
        A header number is NaN or infinite (before anything is written).
    OSError
        The file cannot be written (``IsADirectoryError``: ``path`` is a directory;
        ``FileNotFoundError``: its directory does not exist); an existing file at
        ``path`` is left unchanged.

    See Also
    --------
    read_state : Read the file back, checked.
    gapy.GAPRegressor.save : Write a fitted model.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from gapy.io import read_state, write_state
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_state({"zeta": 4}, {"alpha": np.arange(3.0)}, Path(tmp) / "model.npz")
    ...     header, arrays = read_state(Path(tmp) / "model.npz")
    >>> header["zeta"], header["format"], arrays["alpha"]
    (4, 'gapy-model', array([0., 1., 2.]))
    """
    if format_version not in READABLE_VERSIONS or format_version < 3:
        raise ValueError(f"format_version must be one of 3..{FORMAT_VERSION}, got {format_version!r}")
    arrays = {name: np.asarray(array) for name, array in arrays.items()}
    header = {
        **jsonable(header),
        "format": FORMAT,
        "format_version": format_version,
        "gapy_version": __version__,
        "checksums": {name: _checksum(array) for name, array in arrays.items()},
    }
    text = json.dumps(header, sort_keys=True, allow_nan=False)
    buffer = io.BytesIO()
    np.savez(buffer, header=np.array(text), **{_HEADER_CHECKSUM: np.array(_text_checksum(text))}, **arrays)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a model file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write the model file {path}: directory {path.parent} does not exist")
    write_atomically(path, buffer.getvalue())


def is_model_file(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a file that looks like a gapy model (an ``.npz`` archive with a header).

    Only the archive's table of contents is read; :func:`read_state` checks the rest.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from gapy.io.model import is_model_file, write_state
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_state({}, {"alpha": np.zeros(2)}, Path(tmp) / "model.gapy")
    ...     _ = (Path(tmp) / "train.xyz").write_text("1\\n\\nSi 0 0 0\\n")
    ...     is_model_file(Path(tmp) / "model.gapy"), is_model_file(Path(tmp) / "train.xyz")
    (True, False)
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return "header.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _text_checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_state(path: Union[str, Path]) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Read and check a model state written by :func:`write_state`.

    The file is read without pickle, so it cannot run code.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`write_state`.

    Returns
    -------
    header : dict
        The JSON header, with the ``format``, ``format_version``, ``gapy_version`` and
        ``checksums`` entries added on writing.
    arrays : dict of str to ndarray
        Every array named in the header's checksums, verified.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        Not a gapy model (a directory, not an archive, no header), corrupt or truncated,
        a checksum that does not match (header or array), or a format version this gapy
        cannot read.

    See Also
    --------
    gapy.load : Read a model file as a fitted :class:`~gapy.GAPRegressor`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from gapy.io import read_state, write_state
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_state({"zeta": 4}, {"alpha": np.arange(3.0)}, Path(tmp) / "model.npz")
    ...     header, arrays = read_state(Path(tmp) / "model.npz")
    >>> header["zeta"], header["format"], arrays["alpha"]
    (4, 'gapy-model', array([0., 1., 2.]))
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a gapy model file")
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            damaged = handle.read(4) == b"PK\x03\x04"  # a zip archive's start, but not its end
        raise ModelFileError(f"{path} is a damaged or truncated archive (an interrupted copy?), not a readable "
                             "gapy model file" if damaged else f"{path} is not a gapy model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "header" not in archive.files:
                raise ModelFileError(f"{path} is not a gapy model file (no header)")
            text = str(archive["header"])
            header = json.loads(text)
            if not isinstance(header, dict):
                raise ModelFileError(f"{path} is not a gapy model file (the header is not a JSON object)")
            if header.get("format") != FORMAT:
                raise ModelFileError(f"{path} is not a gapy model file (format {header.get('format')!r})")
            stored_checksum = str(archive[_HEADER_CHECKSUM]) if _HEADER_CHECKSUM in archive.files else None
            checksums = header.get("checksums")
            if not isinstance(checksums, dict):
                raise ModelFileError(f"{path} is corrupt: the header has no array checksums")
            missing = [name for name in checksums if name not in archive.files]
            if missing:
                raise ModelFileError(f"{path} is corrupt: arrays {missing} are missing")
            arrays = {name: archive[name] for name in checksums}
    except ModelFileError:
        raise
    except Exception as error:  # a damaged archive or array header raises many kinds (numpy parses it)
        raise ModelFileError(f"{path} is not a readable gapy model file ({type(error).__name__}: {error})") \
            from error
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{path} has model format version {version!r}; this gapy {__version__} reads "
            f"versions {list(READABLE_VERSIONS)}: load it with the gapy {header.get('gapy_version')} "
            "that wrote it"
        )
    if (version >= 3 or stored_checksum is not None) and stored_checksum != _text_checksum(text):
        raise ModelFileError(f"{path} is corrupt or was edited: the checksum of its header does not match")
    if version < 4 and header.get("terms"):
        raise ModelFileError(f"{path} is corrupt or was edited: model format version {version} cannot hold "
                             "extra terms, and its header has some")
    for name, array in arrays.items():
        if _checksum(array) != checksums[name]:
            raise ModelFileError(f"{path} is corrupt: checksum of '{name}' does not match")
    return header, arrays

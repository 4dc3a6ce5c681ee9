"""Model files: one ``.npz`` archive with a JSON header, never pickle.

The archive holds the arrays of the sparse GP and a ``header`` entry (a JSON string) with
the file format version, the gapy version, every hyperparameter, the descriptor settings,
``e0`` and a SHA-256 checksum of each array. Loading checks all of it and raises
:class:`~gapy.exceptions.ModelFileError` with the reason.
"""

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Union

import numpy as np

from .._version import __version__
from ..descriptors import SOAP
from ..exceptions import ModelFileError
from ..gp import SparseGP

FORMAT = "gapy-model"
FORMAT_VERSION = 2
#: Versions this gapy reads: 2 added ``std_scale`` (from ``GAPRegressor.calibrate``).
READABLE_VERSIONS = (1, 2)
_ARRAYS = ("sparse", "sparse_species", "alpha", "r_factor", "kmm_factor")


def _checksum(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def save_model(model, path: Union[str, Path]) -> None:
    """Write a fitted :class:`~gapy.GAPRegressor` to ``path`` (``.npz`` archive)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "gp_")
    gp = model.gp_
    arrays = {name: np.asarray(getattr(gp, name)) for name in _ARRAYS}
    params = {k: v for k, v in model.get_params(deep=False).items() if k != "descriptor"}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gapy_version": __version__,
        "descriptor": {"type": "SOAP", **model.descriptor_.get_params()},
        "params": _jsonable(params),
        "e0": {str(z): e for z, e in model.e0_.items()},
        "zeta": gp.zeta,
        "delta": gp.delta,
        "n_observations": int(model.n_observations_),
        "std_scale": dict(getattr(model, "std_scale_", {})),
        "checksums": {name: _checksum(array) for name, array in arrays.items()},
    }
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez(handle, header=np.array(json.dumps(header)), **arrays)


def load_model(path: Union[str, Path]):
    """Read a model written by :func:`save_model`; returns a fitted ``GAPRegressor``.

    Raises
    ------
    ModelFileError
        Not a gapy model, corrupt or truncated file, checksum mismatch, or a format
        version this gapy cannot read.
    """
    from ..estimator import GAPRegressor

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a gapy model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "header" not in archive.files:
                raise ModelFileError(f"{path} is not a gapy model file (no header)")
            header = json.loads(str(archive["header"]))
            arrays = {name: archive[name] for name in _ARRAYS}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as error:
        raise ModelFileError(f"{path} is not a readable gapy model file ({error})") from error
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a gapy model file (format {header.get('format')!r})")
    version = header.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{path} has model format version {version}; this gapy {__version__} reads "
            f"versions {list(READABLE_VERSIONS)}: load it with the gapy {header.get('gapy_version')} "
            "that wrote it"
        )
    for name, array in arrays.items():
        if _checksum(array) != header["checksums"].get(name):
            raise ModelFileError(f"{path} is corrupt: checksum of '{name}' does not match")
    descriptor_settings = dict(header["descriptor"])
    descriptor_settings.pop("type")
    descriptor = SOAP(**descriptor_settings)
    model = GAPRegressor(descriptor=descriptor, **header["params"])
    model.descriptor_ = descriptor
    model.e0_ = {int(z): float(e) for z, e in header["e0"].items()}
    model.gp_ = SparseGP(
        sparse=arrays["sparse"],
        sparse_species=arrays["sparse_species"],
        zeta=int(header["zeta"]),
        delta=float(header["delta"]),
        alpha=arrays["alpha"],
        r_factor=arrays["r_factor"],
        kmm_factor=arrays["kmm_factor"],
    )
    model.species_ = descriptor.atomic_numbers.copy()
    model.n_observations_ = header["n_observations"]
    model.std_scale_ = {str(k): float(v) for k, v in header.get("std_scale", {}).items()}
    return model


def _jsonable(value):
    """Convert numpy scalars and dict keys so that ``json.dumps`` accepts them."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.random.Generator):  # a seed object cannot be stored
        return None
    return value

"""A fitted :class:`gapy.GAPRegressor` as a state (a JSON-able header and named arrays) and back.

The work of :meth:`gapy.GAPRegressor.to_state`, :meth:`~gapy.GAPRegressor.from_state`,
:meth:`~gapy.GAPRegressor.save` and :func:`gapy.load`; the file itself (checksums, atomic
writes, format versions) is :mod:`gapy.io.model`'s.
"""

import copy
import os
from typing import TYPE_CHECKING, Dict, Tuple, Type, Union

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..baseline import ZBL
from ..descriptors import SOAP
from ..exceptions import ModelFileError
from ..gp import SparseGP, check_variance_kind
from ..gp.terms import InstanceSparseSet, check_delta
from ..kernels import check_theta, check_zeta
from ..structures import atomic_number
from ..term import TERMS, Term
from .model import FORMAT_VERSION, read_state, write_state

if TYPE_CHECKING:
    from ..estimator import GAPRegressor


#: Arrays of the sparse GP stored in model files.
_STATE_ARRAYS = ("sparse", "sparse_species", "alpha", "r_factor", "kmm_factor")


def to_state(model: "GAPRegressor") -> Tuple[dict, Dict[str, np.ndarray]]:
    """The header and arrays of a fitted model (:meth:`gapy.GAPRegressor.to_state`)."""
    check_is_fitted(model, "gp_")
    gp = model.gp_
    params = model.get_params(deep=False)
    params.pop("descriptor")
    for name, _ in TERMS:  # stored under "terms", and only when set (SOAP-only headers as before)
        params.pop(name)
    if isinstance(params["baseline"], ZBL):
        params["baseline"] = params["baseline"].get_params()
    if isinstance(params["random_state"], np.random.Generator):  # a seed object is not stored
        params["random_state"] = None
    header = {
        "descriptor": {"type": "SOAP", **model.descriptor_.get_params()},
        "params": params,
        "e0": {str(z): e for z, e in model.e0_.items()},
        "baseline": None if model.baseline_ is None else {"type": "ZBL", **model.baseline_.get_params()},
        "zeta": gp.zeta,
        "delta": gp.delta,
        "n_observations": int(gp.n_observations),
        "std_scale": dict(model.std_scale_),
        "std_noise_weight": dict(getattr(model, "std_noise_weight_", {})),
        "std_scale_variance": model.std_scale_variance_,
        "label_sigmas": model.label_sigmas_,
        "pair_shortest": [[*pair, distance] for pair, distance in model.pair_shortest_.items()],
    }
    if getattr(model, "provenance_", None):
        header["provenance"] = model.provenance_
    arrays = {name: getattr(gp, name) for name in _STATE_ARRAYS}
    if gp.isolated is not None:
        arrays["isolated"] = gp.isolated
    if gp.terms:
        header["terms"] = {}
        # the fitted terms, whatever set_params did to the parameters since
        for (name, descriptor), fitted in zip(model.term_descriptors_.items(), gp.terms):
            term = getattr(model, name)
            if term is not None and term.descriptor.get_params() == descriptor.get_params():
                params = {"delta": term.delta, "theta": term.theta, "n_sparse": term.n_sparse}
            else:  # (a term set to None or replaced after the fit: its fitted values)
                params = {"delta": fitted.delta, "theta": fitted.theta.tolist(), "n_sparse": len(fitted.sparse)}
            header["terms"][name] = {
                "descriptor": {"type": type(descriptor).__name__, **descriptor.get_params()},
                "params": params, "theta": fitted.theta.tolist(), "delta": fitted.delta,
            }
            arrays[f"{name}_sparse"] = fitted.sparse
            arrays[f"{name}_sparse_classes"] = fitted.sparse_classes
    return header, arrays


def from_state(cls: Type["GAPRegressor"], header: dict, arrays: Dict[str, np.ndarray]) -> "GAPRegressor":
    """A fitted ``cls`` from a state, every field checked (:meth:`gapy.GAPRegressor.from_state`)."""
    try:
        params = dict(header["params"])
        if isinstance(params.get("baseline"), dict):
            params["baseline"] = ZBL(**params["baseline"])
        fitted_baseline = header.get("baseline")
        if fitted_baseline is not None:
            fitted_baseline = dict(fitted_baseline)
            if fitted_baseline.pop("type") != "ZBL":
                raise ValueError("unknown baseline type")
            fitted_baseline = ZBL(**fitted_baseline)
        settings = dict(header["descriptor"])
        if settings.pop("type") != "SOAP":
            raise ValueError("unknown descriptor type")
        descriptor = SOAP(**settings)
        model = cls(descriptor=descriptor, **params)
        model._check_parameters()
        zeta, delta = check_zeta(header["zeta"]), float(header["delta"])
        e0 = {atomic_number(z): float(e) for z, e in header["e0"].items()}
        term_descriptors, terms = _terms_from_state(header.get("terms", {}), arrays)
        model.set_params(**{name: Term(copy.deepcopy(term_descriptors[name]), **record["params"])
                            for name, record in header.get("terms", {}).items()})
        model._check_parameters()
        std_scale = {str(k): float(v) for k, v in header.get("std_scale", {}).items()}
        std_noise_weight = {str(k): float(v) for k, v in header.get("std_noise_weight", {}).items()}
        std_scale_variance = check_variance_kind(header.get("std_scale_variance", model.variance))
        label_sigmas = _label_sigmas_from_state(header.get("label_sigmas"), model)
        provenance = header.get("provenance", {})
        if not isinstance(provenance, dict):
            raise ValueError("provenance must be a JSON object")
        training = provenance.get("training")
        counts = {} if training is None else {  # (files before the record: not restored)
            "label_counts_": {str(kind): int(n) for kind, n in training["labels"].items()},
            "n_environments_": {str(symbol): int(n) for symbol, n in training["environments"].items()}}
        n_observations = int(header["n_observations"])
        pair_shortest = {(atomic_number(int(z_i)), atomic_number(int(z_j))): float(distance)
                         for z_i, z_j, distance in header.get("pair_shortest", [])}
        if not all(np.isfinite(distance) and distance > 0 for distance in pair_shortest.values()):
            raise ValueError("pair_shortest must hold positive finite distances")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelFileError(f"malformed model header ({type(error).__name__}: {error})") from None
    _check_state_arrays(arrays, descriptor.n_features, len(descriptor.atomic_numbers),
                        sum(len(term.sparse) for term in terms))
    missing = sorted(set(int(z) for z in descriptor.atomic_numbers) - set(e0))
    if missing:
        raise ModelFileError(f"malformed model header: e0 has no value for atomic numbers {missing}")
    if not np.all(np.isfinite(list(e0.values()) + [delta] + list(std_scale.values()) + list(std_noise_weight.values()))
                  ) or delta <= 0 or any(w < 0 for w in std_noise_weight.values()):
        raise ModelFileError("malformed model header: e0, delta, std_scale and std_noise_weight must be finite, "
                             "delta > 0, std_noise_weight >= 0")
    model.descriptor_ = descriptor
    model.term_descriptors_ = term_descriptors
    model.e0_ = e0
    model.baseline_ = fitted_baseline
    model.gp_ = SparseGP(
        sparse=arrays["sparse"], sparse_species=arrays["sparse_species"], zeta=zeta, delta=delta,
        isolated=arrays.get("isolated"), terms=terms, alpha=arrays["alpha"], r_factor=arrays["r_factor"],
        kmm_factor=arrays["kmm_factor"], n_observations=n_observations,
    )
    model.species_ = descriptor.atomic_numbers.copy()
    model.n_observations_ = n_observations
    model.std_scale_ = std_scale
    model.std_noise_weight_ = std_noise_weight
    model.std_scale_variance_ = std_scale_variance
    model.label_sigmas_ = label_sigmas
    model.pair_shortest_ = pair_shortest
    model.provenance_ = provenance
    for name, value in counts.items():
        setattr(model, name, value)
    return model


def save_model(model: "GAPRegressor", path: Union[str, os.PathLike]) -> None:
    """Write a fitted model to ``path`` (:meth:`gapy.GAPRegressor.save`)."""
    write_state(*model.to_state(), path, format_version=FORMAT_VERSION if model.gp_.terms else 3)


def load_model(path: Union[str, os.PathLike]) -> "GAPRegressor":
    """Read a model file written by :meth:`GAPRegressor.save` (also ``gapy.load``).

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :meth:`GAPRegressor.save` (a gapy ``.npz`` model file).

    Returns
    -------
    GAPRegressor
        Fitted, with the settings it was fitted with.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    gapy.ModelFileError
        Not a gapy model, corrupt, truncated or edited, malformed, or of a format version
        this gapy cannot read; the message names the file and what is wrong.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import gapy
    >>> from gapy.datasets import load_si
    >>> model = gapy.GAPRegressor(gapy.SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3),
    ...                           n_sparse=20).fit(load_si("train")[:4])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model.save(Path(tmp) / "si.gapy")
    ...     loaded = gapy.load(Path(tmp) / "si.gapy")
    >>> loaded.gp_.sparse.shape
    (20, 40)
    """
    from ..estimator import GAPRegressor  # (gapy.estimator imports this module)

    header, arrays = read_state(path)
    try:
        return GAPRegressor.from_state(header, arrays)
    except ModelFileError as error:
        raise ModelFileError(f"{path}: {error}") from None


def _label_sigmas_from_state(record, model: "GAPRegressor") -> dict:
    """The fitted noise sigmas of a model header (files before they were stored: the saved parameters)."""
    if record is None:
        return model._label_sigmas()
    sigmas = {}
    for name in ("energy", "forces", "virial"):
        value = record[name]
        sigmas[name] = None if value is None else float(value)
        if value is not None and not (np.isfinite(sigmas[name]) and sigmas[name] > 0):
            raise ValueError(f"label_sigmas: {name} must be a positive number or null, got {value!r}")
    if not isinstance(record["per_atom"], bool):
        raise ValueError(f"label_sigmas: per_atom must be true or false, got {record['per_atom']!r}")
    return {**sigmas, "per_atom": record["per_atom"]}


def _terms_from_state(records: dict, arrays: Dict[str, np.ndarray]):
    """Descriptors (by name) and ``InstanceSparseSet`` of the extra terms of a state, checked."""
    types = dict(TERMS)
    descriptors, terms = {}, []
    for name, _ in TERMS:  # in the order of the concatenated rows
        if name not in records:
            continue
        record = records[name]
        settings = dict(record["descriptor"])
        if settings.pop("type") != types[name].__name__:
            raise ValueError(f"terms: {name} has an unknown descriptor type")
        descriptor = types[name](**settings)
        sparse, classes = arrays.get(f"{name}_sparse"), arrays.get(f"{name}_sparse_classes")
        if sparse is None or classes is None:
            raise ValueError(f"terms: the arrays of {name} are missing")
        if sparse.ndim != 2 or sparse.shape[1] != descriptor.n_features or classes.shape != (len(sparse),) \
                or not np.issubdtype(classes.dtype, np.integer) or not np.all(np.isfinite(sparse)) \
                or (len(classes) and (classes.min() < 0 or classes.max() >= descriptor.n_classes)):
            raise ValueError(f"terms: the sparse points of {name} have bad shapes or values")
        descriptors[name] = descriptor
        terms.append(InstanceSparseSet(sparse, classes, check_theta(record["theta"], descriptor.n_features),
                                       check_delta(record["delta"])))
    unknown = set(records) - set(types)
    if unknown:
        raise ValueError(f"unknown terms {sorted(unknown)}")
    return descriptors, tuple(terms)


def _check_state_arrays(arrays: Dict[str, np.ndarray], n_features: int, n_species: int, n_term_points: int = 0) -> None:
    """Shapes, dtypes and finiteness of a model's arrays; ``ModelFileError`` otherwise."""
    missing = [name for name in _STATE_ARRAYS if name not in arrays]
    if missing:
        raise ModelFileError(f"model arrays {missing} are missing")
    m = len(arrays["sparse"])
    total = m + n_term_points
    expected = {"sparse": (m, n_features), "sparse_species": (m,), "alpha": (total,), "r_factor": (total, total),
                "kmm_factor": (total, total)}
    for name, shape in expected.items():
        array = arrays[name]
        if array.shape != shape:
            raise ModelFileError(f"model array '{name}' has shape {array.shape}, expected {shape}")
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise ModelFileError(f"model array '{name}' is not numeric and finite")
    isolated = arrays.get("isolated")
    if isolated is not None and (isolated.shape != (n_species, n_features) or not np.all(np.isfinite(isolated))):
        raise ModelFileError(f"model array 'isolated' has shape {isolated.shape} or non-finite values, expected "
                             f"({n_species}, {n_features}) finite")
    species = arrays["sparse_species"]
    if not np.issubdtype(species.dtype, np.integer) or (m and (species.min() < 0 or species.max() >= n_species)):
        raise ModelFileError(f"model array 'sparse_species' has indices outside 0..{n_species - 1}")

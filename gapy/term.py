"""``Term``: the settings of an extra (2-body, 3-body) term of a GAP model."""

from numbers import Integral
from typing import Optional, Sequence, Union

import numpy as np
from sklearn.base import BaseEstimator

from .descriptors import InstanceDescriptor, ThreeBody, TwoBody
from .kernels import check_theta


class Term(BaseEstimator):
    """An extra term of the local energy: a descriptor, a squared-exponential kernel, sparse points.

    Given to :class:`gapy.GAPRegressor` as ``two_body=Term(TwoBody(...), ...)`` or
    ``three_body=Term(ThreeBody(...), ...)``. The term's energy is ``sum_t f_c(t) g(x_t)``
    over the pairs or triplets ``t`` of a structure, with a latent function ``g`` of prior
    ``cov(g(x), g(x')) = delta^2 exp(-sum_f (x_f - x'_f)^2 / (2 theta_f^2))`` within a
    species pair (triplet) and independent of SOAP's local energies and of other terms
    (see :mod:`gapy.gp.terms`). Its sparse points are chosen in the first pass of the
    fit: for one feature (``TwoBody``) a grid of ``n_sparse`` distances per species pair,
    from the shortest distance seen in the training data to ``r_cut``; for more features
    (``ThreeBody``) ``n_sparse`` triplets per class by farthest-point sampling (distances
    in units of ``theta``), seeded by the model's ``random_state``, among at most
    ``sparse_candidates`` triplets per class (a seeded uniform sample).

    A scikit-learn style parameter object: ``clone``, ``set_params(two_body__delta=2.0)``
    and ``GridSearchCV`` over ``two_body__theta`` or ``two_body__descriptor__r_cut`` work.

    Parameters
    ----------
    descriptor : TwoBody or ThreeBody
        The term's descriptor (its species must include every species of the data).
    delta : float, default=1.0
        Prior standard deviation of ``g`` in eV (GAP-18 uses a few eV for its 2-body
        term).
    theta : float or sequence of float, default=0.5
        Length scale of each feature (Angstrom for distances); one number for all.
    n_sparse : int, default=20
        Sparse points per class (species pair or triplet); >= 2 for a 2-body grid. A
        3-body term needs a few hundred for meaningful "dtc" and "local" stds: the
        residuals of thousands of similar triplets add up (``docs/terms.md``).

    Examples
    --------
    >>> from sklearn.base import clone
    >>> from gapy import GAPRegressor, SOAP, Term, TwoBody
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10,
    ...                      two_body=Term(TwoBody(["Si"], r_cut=4.0), delta=2.0, theta=0.5))
    >>> clone(model).set_params(two_body__delta=3.0).two_body
    Term(delta=3.0, descriptor=TwoBody(species=['Si'], r_cut=4.0, cutoff_width=1.0))
    """

    def __init__(
        self,
        descriptor: Optional[InstanceDescriptor] = None,
        *,
        delta: float = 1.0,
        theta: Union[float, Sequence[float]] = 0.5,
        n_sparse: int = 20,
    ):
        self.descriptor = descriptor
        self.delta = delta
        self.theta = theta
        self.n_sparse = n_sparse

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self.get_params(deep=False) == other.get_params(deep=False)

    __hash__ = None


#: The extra terms of :class:`gapy.GAPRegressor`: parameter name, descriptor class (in the order of their rows).
TERMS = (("two_body", TwoBody), ("three_body", ThreeBody))


def check_term(name: str, term, descriptor_type) -> None:
    """``ValueError``/``TypeError`` naming the parameter unless ``term`` is a valid ``Term``."""
    if not isinstance(term, Term):
        raise TypeError(f"{name} must be None or a gapy.Term, got {type(term).__name__}")
    if not isinstance(term.descriptor, descriptor_type):
        raise TypeError(f"{name}.descriptor must be a gapy.{descriptor_type.__name__}, got "
                        f"{type(term.descriptor).__name__}")
    delta = term.delta
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)) or not np.isfinite(delta) \
            or delta <= 0:
        raise ValueError(f"{name}.delta must be a finite number > 0, got {delta!r}")
    try:
        check_theta(term.theta, term.descriptor.n_features)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name}.theta: {error}") from None
    low = 2 if term.descriptor.n_features == 1 else 1
    if isinstance(term.n_sparse, bool) or not isinstance(term.n_sparse, Integral) or term.n_sparse < low:
        raise ValueError(f"{name}.n_sparse must be an integer >= {low}, got {term.n_sparse!r}")

"""gapy: Gaussian Approximation Potentials in Python."""

from ._version import __version__
from .calculator import GAPCalculator
from .descriptors import SOAP, SOAPGradients, ThreeBody, TwoBody
from .estimator import GAPRegressor
from .estimator import load_model as load
from .recommend import recommend
from .term import Term
from .exceptions import ClusterError, DataFileError, GapyError, ModelFileError, StructureError
from .validation import validate

__all__ = [
    "GAPCalculator",
    "GAPRegressor",
    "SOAP",
    "SOAPGradients",
    "ClusterError",
    "DataFileError",
    "ThreeBody",
    "TwoBody",
    "GapyError",
    "ModelFileError",
    "StructureError",
    "Term",
    "load",
    "recommend",
    "validate",
    "__version__",
]

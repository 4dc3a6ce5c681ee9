"""gapy: Gaussian Approximation Potentials in Python."""

from ._version import __version__
from .calculator import GAPCalculator  # noqa: E402
from .descriptors import SOAP, SOAPGradients  # noqa: E402
from .estimator import GAPRegressor  # noqa: E402
from .exceptions import GapyError, ModelFileError, StructureError  # noqa: E402
from .estimator import load_model as load  # noqa: E402

__all__ = [
    "GAPCalculator",
    "GAPRegressor",
    "SOAP",
    "SOAPGradients",
    "GapyError",
    "ModelFileError",
    "StructureError",
    "load",
    "__version__",
]

"""gapy: Gaussian Approximation Potentials in Python."""

__version__ = "0.1.0"

from .calculator import GAPCalculator  # noqa: E402
from .descriptors import SOAP, SOAPGradients  # noqa: E402
from .estimator import GAPRegressor  # noqa: E402
from .exceptions import GapyError, ModelFileError, StructureError  # noqa: E402
from .io.model import load_model as load  # noqa: E402
from .validation import validate  # noqa: E402

__all__ = [
    "GAPCalculator",
    "GAPRegressor",
    "SOAP",
    "SOAPGradients",
    "GapyError",
    "ModelFileError",
    "StructureError",
    "load",
    "validate",
    "__version__",
]

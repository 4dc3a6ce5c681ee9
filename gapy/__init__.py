"""gapy: Gaussian Approximation Potentials in Python."""

from .descriptors import SOAP, SOAPGradients
from .exceptions import GapyError, ModelFileError, StructureError

__version__ = "0.1.0"

__all__ = ["SOAP", "SOAPGradients", "GapyError", "ModelFileError", "StructureError", "__version__"]

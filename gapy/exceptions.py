"""Exceptions raised by gapy."""

import numpy as np


class GapyError(Exception):
    """Base class of all errors raised by gapy."""


class StructureError(GapyError, ValueError):
    """A structure is unusable: bad positions, cell, species or labels."""


class ModelFileError(GapyError, ValueError):
    """A model file is corrupt, truncated or of an unsupported version."""


class SingularKernelError(GapyError, np.linalg.LinAlgError):
    """``K_MM`` is not positive definite, even with the jitter."""


class DataFileError(GapyError, ValueError):
    """A training data file cannot be read (the structure's index is named), or it
    changed while a fit was reading it."""


class ClusterError(GapyError, RuntimeError):
    """The dask cluster a fit was running on went away or kept losing workers."""

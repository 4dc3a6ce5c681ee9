"""Exceptions raised by gapy."""

import numpy as np


class GapyError(Exception):
    """Base class of all errors raised by gapy.

    Catch it to handle any gapy-specific failure; errors in arguments are the usual
    ``TypeError`` and ``ValueError``, and the subclasses below are also ``ValueError``
    (or ``LinAlgError``), so code that catches those keeps working.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy import SOAP, GapyError
    >>> try:
    ...     SOAP(["Si"]).compute(bulk("Ge"))
    ... except GapyError as error:
    ...     print(type(error).__name__)
    StructureError
    """


class StructureError(GapyError, ValueError):
    """A structure is unusable: bad positions, cell, species or labels.

    The message names the structure (index, formula, config_type) and the field.
    Also a ``ValueError``.

    Examples
    --------
    >>> from ase import Atoms
    >>> from gapy import SOAP, StructureError
    >>> try:
    ...     SOAP(["Si"]).compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, 0.05]]))
    ... except StructureError as error:
    ...     print(error)
    structure (Si2): atoms 0 and 1 are 0.05 A apart (less than 0.1 A); check field 'positions' and the cell
    """


class ModelFileError(GapyError, ValueError):
    """A model file is corrupt, truncated or of an unsupported version.

    Raised by :func:`gapy.load` and :func:`gapy.io.read_state` with the reason. Also a
    ``ValueError``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from gapy import ModelFileError, load
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     (Path(tmp) / "model.npz").write_text("not a model")
    ...     try:
    ...         load(Path(tmp) / "model.npz")
    ...     except ModelFileError as error:
    ...         print("not an .npz archive" in str(error))
    11
    True
    """


class SingularKernelError(GapyError, np.linalg.LinAlgError):
    """``K_MM`` is not positive definite, even with the jitter.

    Also a ``numpy.linalg.LinAlgError``. Usually duplicated sparse points or too small
    a ``sparse_jitter``.
    """


class DataFileError(GapyError, ValueError):
    """A training data file cannot be read, or it changed while a fit was reading it.

    Raised by the frame sources of :mod:`gapy.io` (and so by ``GAPRegressor.fit`` given
    a path): the message names the file, the structure's index and, for extended XYZ,
    its line. Also a ``ValueError``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from gapy import DataFileError
    >>> from gapy.io import FileSource
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     try:
    ...         FileSource(Path(tmp) / "missing.xyz")
    ...     except DataFileError as error:
    ...         print(str(error).endswith("missing.xyz: no such file"))
    True
    """


class ClusterError(GapyError, RuntimeError):
    """The dask cluster a fit was running on went away or kept losing workers.

    Raised when the dask client is closed during a fit or its tasks keep failing after
    the retries; nothing was fitted. Also a ``RuntimeError``.

    Examples
    --------
    >>> from gapy import ClusterError, GapyError
    >>> issubclass(ClusterError, GapyError), issubclass(ClusterError, RuntimeError)
    (True, True)
    """

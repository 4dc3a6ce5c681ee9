"""Exceptions raised by gapy."""


class GapyError(Exception):
    """Base class of all errors raised by gapy."""


class StructureError(GapyError, ValueError):
    """A structure is unusable: bad positions, cell, species or labels."""


class ModelFileError(GapyError, ValueError):
    """A model file is corrupt, truncated or of an unsupported version."""

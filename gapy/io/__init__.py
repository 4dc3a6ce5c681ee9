"""Reading and writing gapy files."""

from .model import read_state, write_state

__all__ = ["read_state", "write_state"]

"""Reading and writing gapy files."""

from .model import load_model, save_model

__all__ = ["load_model", "save_model"]

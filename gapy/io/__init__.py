"""Reading and writing gapy files: model files and streams of training structures."""

from .frames import FileSource, FrameSource, IteratorSource, ListSource, StructureRef, frame_source
from .model import read_state, write_state

__all__ = ["FileSource", "FrameSource", "IteratorSource", "ListSource", "StructureRef", "frame_source",
           "read_state", "write_state"]

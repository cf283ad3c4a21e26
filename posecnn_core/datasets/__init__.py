"""Dataset readers."""
from .ycb import BadFrameFileError, Frame, YCBVideoDataset, read_frame

__all__ = ["BadFrameFileError", "Frame", "YCBVideoDataset", "read_frame"]

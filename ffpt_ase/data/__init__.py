"""Labelled frames: the container, its ``.npz`` format and readers for external data sets."""

from .frames import DataFormatError, Frames
from .readers import (read_ase_trajectory, read_combustion_npz, read_deepmd, read_extxyz,
                      read_frames, write_frames)

__all__ = ["DataFormatError", "Frames", "read_ase_trajectory", "read_combustion_npz",
           "read_deepmd", "read_extxyz", "read_frames", "write_frames"]

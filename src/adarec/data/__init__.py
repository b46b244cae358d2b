"""Data: reading, downloading, splitting, synthesising and batching interaction sequences."""

from adarec.data.sequences import Sequences

__all__ = ["Sequences"]

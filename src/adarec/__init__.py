"""adarec: ADARec and its baselines (SASRec, ELCRec) for sequential recommendation."""

__version__ = "0.1.0"

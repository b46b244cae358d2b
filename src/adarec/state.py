"""Every random state a training run draws from, captured and restored exactly.

A resumed run must draw the same numbers as the run left alone (docs/resume.md): Python's
``random``, NumPy's global generator, torch's CPU generator (dropout, augmentations,
diffusion noise), every CUDA device's generator, and the loop's own batch generator.
The captured states are plain lists and tensors, so they load with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng(batches: torch.Generator) -> dict[str, Any]:
    """The current state of every generator; ``batches`` is the loop's batch generator."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(words), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batches": batches.get_state(),
    }


def restore_rng(state: dict[str, Any], batches: torch.Generator) -> None:
    """Put every generator back where `capture_rng` found it.

    CUDA states are restored when this machine has the same number of devices as the one
    that captured them (a CPU run captured none); otherwise they are left seeded.
    """
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    batches.set_state(state["batches"])

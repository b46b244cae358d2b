"""Every random state a training run draws from, captured and restored exactly.

A resumed run must draw the same numbers as the run left alone (docs/resume.md): Python's
``random``, NumPy's global generator, torch's CPU generator (dropout, augmentations,
diffusion noise), every CUDA device's generator, and the loop's own batch generator.
The captured states are plain lists and tensors, so they load with ``weights_only=True``.
Under torchrun every process has its own (`capture_rank_rng`; docs/distributed.md).
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch

from adarec import distributed


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


def seed_process(seed: int) -> None:
    """Seed this process's own generators (torch's, NumPy's, Python's): under torchrun
    each rank draws its own dropout masks, augmentations and noise."""
    torch.manual_seed(seed % 2**63)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rank_rng(generator: torch.Generator) -> dict[str, Any]:
    """`capture_rng` of this process; under torchrun, with every rank's states in
    ``ranks`` (rank 0 writes ``last.pt`` for all)."""
    own = capture_rng(generator)
    if not distributed.active():
        return own
    return {**own, "ranks": distributed.all_objects(own)}


def restore_rank_rng(saved: dict[str, Any], generator: torch.Generator, seed: int) -> None:
    """Restore this process's random states from ``last.pt``'s ``saved``. A run resumed
    with another number of processes restores the shared batch generator and seeds each
    process's own generators anew (``seed`` + size + rank); it trains on, not
    repeating the numbers of the run left alone."""
    w = distributed.world()
    ranks = saved.get("ranks", [saved])
    if len(ranks) == w.size:
        restore_rng(ranks[w.rank], generator)
        return
    warnings.warn(f"last.pt was written by {len(ranks)} process(es), this run has {w.size}: "
                  "the run goes on, but its random draws differ from the run left alone",
                  stacklevel=2)
    restore_rng(ranks[0], generator)
    seed_process(seed + w.size + w.rank)

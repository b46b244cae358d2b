"""Memory a configuration needs, estimated before anything is allocated
(docs/configuration.md#memory-check).

A size that is valid but impossible (``model.hidden_size=1000000000``, ``model.num_layers=
1000000``) would otherwise end in an allocator's traceback, or build layers for minutes
before failing. `check_memory` compares an estimate FROM BELOW with the memory the device
has: it refuses what cannot fit, with one message that gives both figures, and never a
configuration that would fit (a configuration it admits may still run out: the estimate
leaves out most of what a step keeps). ``runtime.memory_check=false`` skips it.

The parts, in bytes (fp32, 4 bytes a number; D = hidden size, L = max_len, R = the rows
of a training step, at most the training rows):

* weights: each encoder's ``12 D^2`` per layer plus the item table ``(n_items + 1) D``,
  times 4 for the weights, their gradients and Adam's two moments (the release: 2 members;
  ADARec: 2 experts unless ``adarec.experts=1``);
* training activations: ``R L D`` per layer and pass, 8 numbers a position (the 4x
  feed-forward's inner width and the attention's inputs), plus the attention
  probabilities ``R heads L^2``; the recommendation loss adds its logits and their
  gradient, ``2 R L w``: ``w = n_items + 1`` for ``rec_loss=ce`` (``ce_chunk_items`` when
  set), ``negatives + 1`` for ``sampled_softmax`` and ``gbce``;
* evaluation: one block of scores, ``eval_batch_size (n_items + 1)``, and its masked copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from adarec.config import RunConfig
from adarec.errors import AdarecError

BYTES = 4  # fp32
GIB = 1 << 30


@dataclass(frozen=True)
class Estimate:
    """Lower bounds, in bytes, of what a configuration holds at once."""

    weights: int
    activations: int
    evaluation: int

    @property
    def total(self) -> int:
        return self.weights + max(self.activations, self.evaluation)


def encoder_passes(config: RunConfig) -> tuple[int, int]:
    """(encoders with their own weights, encoder passes of a training step's rows)."""
    m, a = config.model, config.adarec
    if m.name == "adarec":
        experts = 1 if a.experts == 1 else 2
        return experts, experts * (a.max_depth + 1)
    if m.name == "release":
        return len(config.release.depths), 2 + 2 * config.release.view_passes
    if m.name == "elcrec":
        return 1, 3  # the clean rows and two augmented views
    return 1, 1


def estimate(config: RunConfig, *, n_items: int, max_len: int, train_rows: int,
             eval_batch_size: int = 512) -> Estimate:
    """See the module docstring. Python integers: no overflow for absurd sizes."""
    m = config.model
    d, layers, heads = int(m.hidden_size), int(m.num_layers), int(m.num_heads)
    encoders, passes = encoder_passes(config)
    table = (n_items + 1) * d
    weights = 4 * BYTES * encoders * (layers * 12 * d * d + table)
    rows = min(int(config.train.batch_size), max(train_rows, 1))
    per_layer = rows * max_len * (8 * d + heads * max_len)
    activations = BYTES * passes * layers * per_layer
    # Logits and their gradient: every item for ``ce`` (a chunk of them with
    # ``ce_chunk_items``), the shared negatives for the sampled losses.
    width = {"ce": min(m.ce_chunk_items or n_items + 1, n_items + 1),
             "sampled_softmax": m.negatives + 1, "gbce": m.negatives + 1}.get(m.rec_loss, 0)
    activations += BYTES * 2 * rows * max_len * width
    evaluation = BYTES * 2 * eval_batch_size * (n_items + 1)
    return Estimate(weights, activations, evaluation)


def gib(n: int) -> str:
    """``n`` bytes in GiB, for a message."""
    value = n / GIB
    return f"{value:,.1f}" if value < 1e6 else f"{value:.1e}"


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device``: the GPU's free memory, or the host's available memory
    (Linux ``MemAvailable``, else physical pages); None when it cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(config: RunConfig, *, n_items: int, max_len: int, train_rows: int,
                 device: torch.device, eval_batch_size: int) -> Estimate:
    """Refuse a configuration whose estimate exceeds ``device``'s free memory (see the
    module docstring); returns the estimate."""
    est = estimate(config, n_items=n_items, max_len=max_len, train_rows=train_rows,
                   eval_batch_size=eval_batch_size)
    if not config.runtime.memory_check:
        return est
    free = available_bytes(device)
    if free is not None and est.total > free:
        where = "GPU" if device.type == "cuda" else "machine"
        raise AdarecError(
            f"this configuration needs at least {gib(est.total)} GiB (weights and Adam "
            f"state {gib(est.weights)}, a training step's activations "
            f"{gib(est.activations)}, an evaluation block {gib(est.evaluation)}) "
            f"and the {where} has {gib(free)} GiB free; reduce model.hidden_size, "
            "model.num_layers, train.batch_size or runtime.eval_batch_size, or set "
            "runtime.memory_check=false to try anyway")
    return est

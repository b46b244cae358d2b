"""Divergence: a non-finite training loss stops the run (docs/resume.md#divergence).

On the CPU reading a loss costs nothing, so each step is checked as it ends and the run
stops at once. On a GPU a per-step check would make the host wait for the device at every
step, so the first bad step is tracked on the device (one tiny ``where`` per step, no
sync) and read once, with the epoch's summed losses; the whole epoch is then rejected:
nothing of it is validated, logged or saved, and ``last.pt`` stays at the epoch before.
Under torchrun every process watches that way, and at the end of the epoch they agree on
the first bad step of any of them, so all stop together (none waits for the others).
"""

from __future__ import annotations

import math

import torch

from adarec import distributed
from adarec.errors import AdarecError


class NonFiniteLoss(Exception):
    """Raised inside an epoch: the loss of ``step`` (1-based) was ``value``."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"loss {value} at step {step}")
        self.step, self.value = step, value


class Diverged(AdarecError):
    """The run stopped on a non-finite loss or weights; its last good checkpoint is kept."""


class FiniteWatch:
    """Watches one epoch's step losses for NaN or infinity (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.eager = device.type == "cpu" and not distributed.active()
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_value = torch.zeros((), dtype=torch.float32, device=device)

    def update(self, step: int, loss: torch.Tensor) -> None:
        """Record step ``step``'s (1-based) scalar ``loss``."""
        if self.eager:
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLoss(step, value)
            return
        new = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(new, step, self.first_bad)
        self.bad_value = torch.where(new, loss.detach().float(), self.bad_value)

    def check(self) -> None:
        """At the end of the epoch: raise `NonFiniteLoss` for the first bad step, if any (of
        any process under torchrun, the same on all)."""
        seen = [(int(self.first_bad), float(self.bad_value))]
        if distributed.active():
            seen = distributed.all_objects(seen[0])
        bad = sorted((step, value) for step, value in seen if step >= 0)
        if bad:
            raise NonFiniteLoss(*bad[0])


def weights_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (one device sync)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True

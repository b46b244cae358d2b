"""Training over several processes launched by torchrun (docs/distributed.md).

``torchrun`` starts one process per device and tells each its place through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, and the rendezvous address);
`start` sets the process group up once (NCCL on CUDA, gloo on the CPU). Without torchrun
(no ``WORLD_SIZE``, or 1) nothing here communicates: every helper is the identity, so a
single process computes exactly what it did before.

Two rules make the gradient of N processes the gradient of one process on the global
batch (DistributedDataParallel averages the processes' gradients):

* a loss that is a mean over rows or positions is computed on the local rows and rescaled
  by `global_mean`, so that the processes' values average to the global batch's mean;
* a loss that couples rows (in-batch negatives) is computed whole on every process from the
  rows of all processes (`gather_rows`), whose gradient reaches only the process that owns
  each row, scaled by the world size (the average then counts it once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from adarec.errors import AdarecError

T = TypeVar("T")

# k-means and the final test pass run on rank 0 alone while the others wait: allow long waits.
TIMEOUT = timedelta(minutes=60)


class World(NamedTuple):
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise AdarecError(f"${name} must be an integer, got {value!r}") from None


def launched() -> World:
    """The world torchrun describes in the environment (one process without it)."""
    world = World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise AdarecError(f"RANK={world.rank} and WORLD_SIZE={world.size} do not fit together")
    return world


def active() -> bool:
    """Whether this process trains with others (a process group of more than one)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> World:
    """This process's place in the running process group (one process if there is none)."""
    if not active():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))


def is_main() -> bool:
    """Whether this process is the one that writes (rank 0, or the only one)."""
    return world().rank == 0


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group if launched by it (NCCL for CUDA devices, gloo for the
    CPU) and return the device this process trains on: ``cuda:LOCAL_RANK`` on a GPU node.
    Without torchrun, ``device`` unchanged. Idempotent."""
    w = launched()
    if w.size == 1:
        return device
    if not dist.is_available():
        raise AdarecError("this PyTorch build has no torch.distributed; cannot run under torchrun")
    if device.type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            raise AdarecError(f"LOCAL_RANK {w.local_rank} but only {torch.cuda.device_count()} "
                              "CUDA devices: start at most one process per GPU")
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":  # NCCL bound to this process's GPU, set up at once
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
    return device


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def shard_bounds(n: int, w: World | None = None) -> tuple[int, int]:
    """This process's contiguous share ``lo:hi`` of ``n`` rows (sizes differ by at most 1)."""
    w = w or world()
    return n * w.rank // w.size, n * (w.rank + 1) // w.size


def shard(x: Tensor) -> Tensor:
    """This process's contiguous share of the rows of ``x`` (all of them alone)."""
    lo, hi = shard_bounds(len(x))
    return x[lo:hi]


def broadcast_object(value: T) -> T:
    """Rank 0's ``value``, on every process."""
    if not active():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def all_objects(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order."""
    if not active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone, its result (or its `AdarecError`) on every process.
    Any other exception of rank 0 is raised there as it is, and on the other processes as
    a `RuntimeError` naming it, so that none waits for rank 0 in a later collective."""
    if not active():
        return fn()
    result: tuple[str, Any] = ("ok", None)
    failure: BaseException | None = None
    if is_main():
        try:
            result = ("ok", fn())
        except AdarecError as exc:
            result = ("error", (type(exc), str(exc)))
        except BaseException as exc:  # noqa: BLE001 - told to the others, then re-raised
            failure, result = exc, ("failed", f"{type(exc).__name__}: {exc}")
    kind, value = broadcast_object(result)
    if failure is not None:
        raise failure
    if kind == "error":
        cls, message = value
        raise cls(message)
    if kind == "failed":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def _comm_device() -> torch.device:
    """Where collectives' tensors live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every process."""
    if not active():
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            dist.broadcast(t, src=0)


def sum_tensor(x: Tensor) -> Tensor:
    """The sum of ``x`` over the processes (a new tensor; ``x`` itself if alone)."""
    if not active():
        return x
    out = x.detach().clone()
    dist.all_reduce(out)
    return out


def global_mean(mean: Tensor, count: Tensor | int) -> Tensor:
    """A loss that is a ``mean`` over ``count`` local rows or positions, made this process's
    share of the global batch's mean: ``size * mean * count / (sum of counts)``, which the
    processes average (as DistributedDataParallel averages gradients) to the global mean.
    Alone: ``mean`` itself."""
    if not active():
        return mean
    n = torch.as_tensor(count, device=mean.device).detach().to(torch.float32)
    total = sum_tensor(n)
    return mean * (dist.get_world_size() * n / total.clamp(min=1.0)).to(mean.dtype)


class _GatherRows(torch.autograd.Function):
    """All processes' rows of ``x`` (dim 0), in rank order; the gradient of the result's
    rows of this process flows back, scaled by the world size (see the module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001 - autograd signature
        size, rank = dist.get_world_size(), dist.get_rank()
        n = torch.tensor([x.shape[0]], device=x.device)
        counts = [torch.zeros_like(n) for _ in range(size)]
        dist.all_gather(counts, n)
        sizes = [int(c) for c in counts]
        flag = x.dtype == torch.bool  # gloo gathers no bool tensors
        send = x.to(torch.uint8) if flag else x
        padded = send.new_zeros((max(sizes), *x.shape[1:]))
        padded[: x.shape[0]] = send
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded.contiguous())
        out = torch.cat([p[:k] for p, k in zip(parts, sizes, strict=True)])
        ctx.lo = sum(sizes[:rank])
        ctx.hi = ctx.lo + sizes[rank]
        ctx.size = size
        return out.bool() if flag else out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001 - autograd signature
        return grad[ctx.lo : ctx.hi] * ctx.size


def gather_rows(x: Tensor, dim: int = 0) -> Tensor:
    """All processes' rows of ``x`` along ``dim``, concatenated in rank order (other dims
    must agree); ``x`` itself when alone. For losses over the global batch (in-batch
    negatives, k-means): every process then computes the same value, and the gradient of
    each row reaches its own process only, scaled by the world size."""
    if not active():
        return x
    if dim != 0:
        return _GatherRows.apply(x.movedim(dim, 0)).movedim(0, dim)
    return _GatherRows.apply(x)


class LossModule(nn.Module):
    """``model.loss`` as a module's forward, so that DistributedDataParallel sees it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Any:
        return self.model.loss(batch)


def loss_step(model: nn.Module) -> Callable[[Any], Any]:
    """What computes a training step's loss: ``model.loss`` alone; under torchrun the same
    call through DistributedDataParallel, which averages the gradients in the backward
    pass (rank 0's weights are copied to all processes first)."""
    if not active():
        return model.loss
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # Every model's loss reaches all its parameters (tests/ddp_step.py checks it for each
    # model and the "HP-MoE only" ablation; build.py builds no denoiser without levels), so
    # DDP need not search the graph for unused ones at every step.
    return nn.parallel.DistributedDataParallel(LossModule(model), device_ids=ids)


def any_true(flag: bool | Tensor, device: torch.device | None = None) -> bool:
    """Whether ``flag`` holds on any process (the same answer everywhere)."""
    if not active():
        return bool(flag)
    t = torch.as_tensor(flag, dtype=torch.float32, device=device or _comm_device()).reshape(1)
    return bool(sum_tensor(t.to(_comm_device())) > 0)


def worker_pids(parent: int) -> dict[int, int]:
    """``{rank: pid}`` of the processes that the torchrun process ``parent`` started, read
    from Linux's /proc (empty elsewhere): for tools that kill a worker on purpose
    (`benchmarks/kill_resume.py`, tests; docs/distributed.md#a-lost-worker)."""
    found: dict[int, int] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.update({int(item[5:]): int(entry.name) for item in env
                          if item.startswith(b"RANK=")})
    return found


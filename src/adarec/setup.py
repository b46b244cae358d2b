"""Run setup, shared by `adarec.train.fit`, ``adarec evaluate`` and the benchmarks: device,
seed, matmul precision, the configured data, the model and its optimiser."""

from __future__ import annotations

import re
from typing import NamedTuple

import torch
from torch import nn

from adarec import distributed
from adarec.budget import check_memory
from adarec.config import DataConfig, RunConfig, RuntimeConfig, TrainConfig
from adarec.data.checks import check_same_data
from adarec.data.load import DataInfo, load_sequences, make_splits
from adarec.data.sequences import Sequences
from adarec.data.splits import EvalSplit, Splits, build_splits, left_pad
from adarec.errors import AdarecError
from adarec.model.build import build_model
from adarec.state import seed_process


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is an error, and so is
    any name other than ``auto``, ``cpu``, ``cuda`` and ``cuda:N``."""
    if name not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise AdarecError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AdarecError("device 'cuda' was asked for but PyTorch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    if not 0 <= seed < 2**63:  # what torch's generators take, whatever the platform
        raise AdarecError(f"train.seed must be in 0..2**63-1; got {seed}")
    seed_process(seed)



def configured_sequences(d: DataConfig, data_dir: str | None = None) -> Sequences:
    """The interactions ``d`` names (``data_dir`` overrides ``d.data_dir`` when given)."""
    return load_sequences(
        d.dataset, data_file=d.data_file, data_dir=data_dir or d.data_dir,
        synthetic_users=d.synthetic_users, synthetic_items=d.synthetic_items,
        synthetic_seed=d.synthetic_seed,
    )


def prepare_data(config: RunConfig) -> tuple[Splits, DataInfo]:
    """Load the configured interactions and cut the leave-one-out splits."""
    d = config.data
    seqs = configured_sequences(d)
    return make_splits(seqs, max_len=d.max_len, shorten_seq_to=d.shorten_seq_to)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training steps: bf16 on a GPU under ``auto``, else none."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def set_matmul_precision(precision: str) -> None:
    """fp32 matrix products: TF32 units on a GPU unless ``precision`` is ``fp32``."""
    torch.set_float32_matmul_precision("highest" if precision == "fp32" else "high")


# The score block of an evaluation batch (users x (n_items + 1), fp32, and about two copies
# while masking and ranking) stays under this when the batch size is left to the default.
EVAL_BLOCK_BYTES = 512 << 20


def eval_batch_size(t: RuntimeConfig, device: torch.device, n_items: int | None = None) -> int:
    """Users per full-ranking batch: the configured size, else 512 on a CPU, 2048 on a GPU,
    fewer for a large catalogue (``n_items``) so that a batch's score block and its copies
    stay under `EVAL_BLOCK_BYTES` (1,000,000 items: 44 users a batch)."""
    if t.eval_batch_size is not None:
        return t.eval_batch_size
    default = 2048 if device.type == "cuda" else 512
    if n_items is None:
        return default
    return max(1, min(default, EVAL_BLOCK_BYTES // (12 * (n_items + 1))))


def make_optimizer(model: nn.Module, t: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the configured lr and weight decay (the fused kernel on a GPU)."""
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                            fused=device.type == "cuda")


class Run(NamedTuple):
    """A configuration set up to train: its device, autocast dtype, data and model."""

    config: RunConfig
    device: torch.device
    autocast: torch.dtype | None
    splits: Splits  # still on the CPU
    info: DataInfo
    model: nn.Module  # on ``device``


def setup_run(config: RunConfig) -> Run:
    """Seed, pick the device and matmul precision, load the data and build the model.

    Under torchrun this joins the process group (`adarec.distributed.start`; the device is
    then this process's GPU), checks that the batch splits evenly over the processes, and
    after building the same model everywhere seeds each process's generators with
    ``seed + rank``. Every optimiser is made later, one per training stage
    (`make_optimizer`).
    """
    r, t = config.runtime, config.train
    seed_everything(t.seed)
    world = distributed.launched()
    if t.batch_size % world.size:
        raise AdarecError(f"train.batch_size {t.batch_size} does not split over "
                          f"{world.size} processes: under torchrun the batch size is the "
                          "global batch, and must be a multiple of the number of processes")
    if r.compile and world.size > 1:
        # Not yet tried on GPUs: a process whose compilation fails falls back to eager on
        # its own, and the processes' collectives would no longer line up.
        raise AdarecError("runtime.compile is not supported under torchrun yet; train "
                          "eager (runtime.compile=false) or in one process")
    device = distributed.start(resolve_device(r.device))
    set_matmul_precision(r.precision)
    splits, info = prepare_data(config)
    check_memory(config, n_items=info.n_items, max_len=info.max_len,
                 train_rows=len(splits.train), device=device,
                 eval_batch_size=eval_batch_size(r, device, info.n_items))
    model = build_model(config, n_items=info.n_items, max_len=info.max_len).to(device)
    if world.size > 1:
        seed_process(t.seed + world.rank)
    return Run(config, device, autocast_dtype(r.precision, device), splits, info, model)


def evaluation_split(
    config: RunConfig, info: DataInfo, split: str, *, data_dir: str | None = None,
    shorten_seq_to: int | None = None,
) -> EvalSplit:
    """The ``split`` (valid or test) of the data a trained model's ``config`` names, cut as
    it was for training (``shorten_seq_to`` overrides the configured sparse protocol) and
    left-padded to the model's ``info.max_len``; data the model cannot read is an error."""
    if split not in ("valid", "test"):
        raise AdarecError(f"--split must be valid or test, got {split!r}")
    k = shorten_seq_to if shorten_seq_to is not None else config.data.shorten_seq_to
    if k is not None and k < 1:
        raise AdarecError(f"--shorten-seq-to must be >= 1, got {k}")
    if k is not None and k + 3 > info.max_len:  # checked first: a huge k would not fit memory
        raise AdarecError(f"--shorten-seq-to {k} needs inputs of {k + 3} > the model's "
                          f"max_len {info.max_len}")
    seqs = configured_sequences(config.data, data_dir)
    # The run's data fingerprint ("" for older runs: then only the item count is checked).
    check_same_data(seqs, n_items=info.n_items, expected=info.fingerprint)
    splits = build_splits(seqs, max_len=info.max_len, shorten_seq_to=k)
    ev = getattr(splits, split)
    ev.inputs = left_pad(ev.inputs, info.max_len)
    return ev

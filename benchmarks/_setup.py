"""What the benchmark scripts share: the options that pick a run, and the run they pick
(configuration, device, data and model, set up as `adarec.train.fit` sets them up)."""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple

import torch
from torch import nn

from adarec.config import RunConfig, load_config
from adarec.model.build import build_model
from adarec.model.encoder import set_length_buckets
from adarec.train import (
    autocast_dtype,
    prepare_data,
    resolve_device,
    seed_everything,
    set_matmul_precision,
)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """``--preset``, ``--dataset``, ``--data-dir``, ``--device`` and ``--set``."""
    p.add_argument("--preset", required=True, help="preset name (see `adarec presets`)")
    p.add_argument("--dataset", help="benchmark name, 'synthetic' or 'file'")
    p.add_argument("--data-dir", help="directory holding the benchmark files")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: the preset's train.device (auto = cuda when available)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override section.key=value (repeatable)")


class Run(NamedTuple):
    config: RunConfig
    device: torch.device
    autocast: torch.dtype | None
    splits: Any  # adarec.data.splits.Splits, still on the CPU
    info: Any  # adarec.data DataInfo
    model: nn.Module  # on ``device``, length groups set


def prepare_run(args: argparse.Namespace) -> Run:
    """The configuration the options name, seeded, with its data and model built."""
    overrides = list(args.overrides)
    for key, value in (("data.dataset", args.dataset), ("data.data_dir", args.data_dir),
                       ("train.device", args.device)):
        if value:
            overrides.append(f"{key}={value}")
    config = load_config(args.preset, overrides=overrides)
    t = config.train
    seed_everything(t.seed)
    device = resolve_device(t.device)
    set_matmul_precision(t.precision)
    splits, info = prepare_data(config)
    model = build_model(config, n_items=info.n_items, max_len=info.max_len).to(device)
    set_length_buckets(model, t.length_buckets)
    return Run(config, device, autocast_dtype(t.precision, device), splits, info, model)

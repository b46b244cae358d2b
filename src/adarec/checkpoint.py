"""Self-describing checkpoints: weights plus everything needed to rebuild the model.

A checkpoint holds only plain containers, numbers, strings and tensors, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

import adarec
from adarec.config import RunConfig, config_from_dict
from adarec.data.load import DataInfo
from adarec.errors import AdarecError
from adarec.model.build import build_model

FORMAT = "adarec-checkpoint-1"


def save_checkpoint(
    path: Path, *, model: nn.Module, config: RunConfig, info: DataInfo, epoch: int,
    metrics: dict[str, Any],
) -> None:
    """Write atomically (temporary file, then rename): a crash never leaves half a file."""
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "data_info": dataclasses.asdict(info),
        "epoch": epoch,
        "metrics": metrics,
        "versions": {"adarec": adarec.__version__, "torch": str(torch.__version__)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise AdarecError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or foreign file; torch's text is long
        raise AdarecError(
            f"{path} is not a readable adarec checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise AdarecError(f"{path} is not an adarec checkpoint (format {FORMAT} expected)")
    return state


def model_from_checkpoint(
    state: dict[str, Any],
) -> tuple[nn.Module, RunConfig, DataInfo]:
    """Rebuild the model a checkpoint describes and load its weights."""
    config = config_from_dict(state["config"])
    info = DataInfo(**state["data_info"])
    model = build_model(config, n_items=info.n_items, max_len=info.max_len)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError:
        raise AdarecError(
            "the checkpoint's weights do not fit the model its configuration describes "
            f"(written by adarec {state.get('versions', {}).get('adarec', '?')}, "
            f"this is {adarec.__version__})"
        ) from None
    return model, config, info

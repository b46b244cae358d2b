"""Build a `Recommender` from a run directory or checkpoint, as `adarec serve` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import adarec
from adarec.checkpoint import load_checkpoint, model_from_checkpoint
from adarec.config import RunConfig
from adarec.data.load import DataInfo
from adarec.errors import AdarecError
from adarec.serve.engine import make_engine
from adarec.serve.ids import ItemIds, item_map_path, read_item_map
from adarec.serve.service import Recommender
from adarec.setup import resolve_device


def find_item_ids(config: RunConfig, n_items: int, item_map: Path | None,
                  model_ids: bool = False) -> ItemIds:
    """``item_map`` if given; else, for a model trained on a file (``data.dataset=file``),
    the ``<stem>.item_map.tsv`` that `adarec data import` wrote beside that file, if it is
    there; else (or with ``model_ids``) the model's own ids."""
    if item_map is not None:
        if model_ids:
            raise AdarecError("--item-map and --model-ids contradict each other")
        return read_item_map(item_map, n_items)
    data_file = config.data.data_file
    if not model_ids and config.data.dataset == "file" and data_file:
        beside = item_map_path(Path(data_file))
        if beside.is_file():
            return read_item_map(beside, n_items)
    return ItemIds(n_items)


def _trained_commit(checkpoint: Path) -> str | None:
    """The ``commit`` of the run's ``results.json`` beside the checkpoint, if any."""
    try:
        return json.loads((checkpoint.parent / "results.json").read_text()).get("commit")
    except (OSError, ValueError, AttributeError):
        return None


def _summary(config: RunConfig, info: DataInfo) -> dict[str, Any]:
    m = config.model
    return {"hidden_size": m.hidden_size, "num_layers": m.num_layers, "num_heads": m.num_heads,
            "rec_loss": m.rec_loss, "max_len": info.max_len,
            "history_mask": config.train.history_mask, "seed": config.train.seed}


def load_recommender(
    run: Path, *, engine: str = "torch", device: str = "cpu", threads: int | None = None,
    item_map: Path | None = None, model_ids: bool = False, onnx: Path | None = None,
) -> Recommender:
    """Load the checkpoint once (``run/best.pt`` for a run directory), its item ids and the
    engine (see `make_engine`; ``onnx`` a graph exported from this checkpoint); ``threads``
    sets the intra-op threads of PyTorch and onnxruntime."""
    path = run / "best.pt" if run.is_dir() else run
    state = load_checkpoint(path)
    model, config, info = model_from_checkpoint(state)
    ids = find_item_ids(config, info.n_items, item_map, model_ids)
    if threads is not None and threads < 1:
        raise AdarecError(f"--threads must be >= 1, got {threads}")
    scorer = make_engine(engine, model, n_items=info.n_items, max_len=info.max_len,
                         device=resolve_device(device), threads=threads or 0, onnx=onnx)
    if threads is not None:
        torch.set_num_threads(threads)
    d = config.data
    metadata = {
        "model": config.model.name,
        "dataset": d.data_file if d.dataset == "file" else d.dataset,
        "n_items": info.n_items, "max_len": info.max_len,
        "item_ids": ids.kind, "item_map": None if ids.source is None else str(ids.source),
        "engine": scorer.name, "commit": _trained_commit(path), "checkpoint": str(path),
        "epoch": state.get("epoch"), "adarec_version": adarec.__version__,
        "config": _summary(config, info),
    }
    return Recommender(scorer, ids, n_items=info.n_items, max_len=info.max_len,
                       metadata=metadata)

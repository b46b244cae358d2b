"""The scoring graph of a trained model, for serving: a module and its ONNX export.

The graph (docs/serving.md#adarec-export) maps ``history`` int64 (B, max_len), left-padded
with 0, to ``scores`` float32 (B, n_items + 1), column j = item j, column 0 = padding. It is
the model's own ``score`` on the deterministic inference path: eval mode, no dropout, the
whole batch in one pass (no CPU length groups, whose data-dependent row groups a static
graph cannot hold), and no random draws. Masking the history and taking the top k are the
caller's job (the server does both).
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import torch
from torch import nn

from adarec.errors import AdarecError
from adarec.model.grouping import LengthGrouping

INPUT, OUTPUT = "history", "scores"
# Pinned so that the file does not change with the exporter's default (20 in torch 2.13);
# onnxruntime runs opset 20 from version 1.17.
OPSET = 20


class ScoringGraph(nn.Module):
    """``history`` (B, max_len) int64 -> ``scores`` (B, n_items + 1) of a model's ``score``.

    Holds an eval-mode copy of the model (the caller's model is not changed) that runs its
    batch whole. The release's item table has a spare row at the end; its column is cut.
    """

    def __init__(self, model: nn.Module, n_items: int) -> None:
        super().__init__()
        check_deterministic(model)
        self.model = copy.deepcopy(model).eval()
        for part in self.model.modules():  # no CPU length groups (`adarec.model.grouping`)
            if isinstance(getattr(part, "grouping", None), LengthGrouping):
                part.grouping = None
        self.n_items = n_items
        self.eval()

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.model.score(history)[:, : self.n_items + 1].float()  # (B, n_items + 1)


def check_deterministic(model: nn.Module) -> None:
    """Refuse models whose inference draws noise (ADARec with ``adarec.eval_noise=seeded``):
    their draw depends on the batch's shape, so a served answer would depend on its
    neighbours in the batch, and ONNX cannot replay PyTorch's generator."""
    for module in model.modules():
        if getattr(module, "eval_noise", "zero") != "zero":
            raise AdarecError(
                f"this model draws noise at inference (eval_noise={module.eval_noise}); "
                "serving and export need the deterministic path (adarec.eval_noise=zero)"
            )


def onnx_bytes(model: nn.Module, *, n_items: int, max_len: int) -> bytes:
    """The serialised ONNX model of ``ScoringGraph(model, n_items)`` on the CPU, with a
    dynamic batch dimension and opset ``OPSET`` (torch.onnx's dynamo exporter)."""
    graph = ScoringGraph(model, n_items).cpu()
    example = torch.zeros(2, max_len, dtype=torch.int64)
    example[:, -1] = 1
    batch = torch.export.Dim("batch")
    quiet = io.StringIO()
    # The exporter narrates its steps on stdout and warns about torch internals.
    with warnings.catch_warnings(), redirect_stdout(quiet), _quiet_loggers():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                graph, (example,), None, input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes={INPUT: {0: batch}}, opset_version=OPSET, dynamo=True,
                optimize=True,
                verify=False, report=False,
            )
        except ImportError as exc:
            raise AdarecError(f"ONNX export needs the serve extra: pip install "
                              f"'adarec[serve]' ({exc})") from None
    return program.model_proto.SerializeToString()


@contextmanager
def _quiet_loggers() -> Iterator[None]:
    """Silence the exporter's loggers (torchvision notices, rewrite rules) for a while."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch._dynamo",
                                              "torch.export")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def export_onnx(model: nn.Module, output: Path, *, n_items: int, max_len: int) -> int:
    """Write the ONNX scoring graph to ``output`` atomically; returns its size in bytes."""
    data = onnx_bytes(model, n_items=n_items, max_len=max_len)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return len(data)

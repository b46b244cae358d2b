"""Scoring engines: PyTorch or onnxruntime, the same contract (docs/serving.md).

An engine maps ``history`` (B, max_len) int64, left-padded with 0, to (B, n_items + 1)
float32 CPU scores, column j = item j, column 0 = padding. Both run the deterministic
inference path of `adarec.export.ScoringGraph`; the PyTorch engine runs the model's own
``score`` under ``inference_mode`` on the configured device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from adarec.data.splits import trim_left
from adarec.errors import AdarecError
from adarec.export import INPUT, OUTPUT, check_deterministic, onnx_bytes

ENGINES = ("torch", "onnxruntime")


class ScoreEngine(Protocol):
    """(B, max_len) int64 histories -> (B, n_items + 1) float32 scores on the CPU."""

    name: str

    def __call__(self, history: torch.Tensor) -> torch.Tensor: ...


class TorchEngine:
    """The model's ``score`` under ``inference_mode``; all-padding columns are cut first (the
    models count positions from the right, so no score changes; see `trim_left`)."""

    name = "torch"

    def __init__(self, model: nn.Module, *, n_items: int, device: torch.device) -> None:
        check_deterministic(model)
        self.model = model.to(device).eval()
        self.n_items, self.device = n_items, device

    def __call__(self, history: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            (x,) = trim_left(history.to(self.device))
            scores = self.model.score(x)[:, : self.n_items + 1]  # (B, n_items + 1)
            return scores.float().cpu()


class OnnxEngine:
    """An onnxruntime session over the ONNX scoring graph (CPU execution provider)."""

    name = "onnxruntime"

    def __init__(self, model: bytes | str, *, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise AdarecError("--engine onnxruntime needs the serve extra: "
                              "pip install 'adarec[serve]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no constant-folding notices
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, history: torch.Tensor) -> torch.Tensor:
        (scores,) = self.session.run([OUTPUT], {INPUT: history.numpy()})
        return torch.from_numpy(scores)


    def check_shapes(self, n_items: int, max_len: int, source: object) -> None:
        """Refuse a graph whose input or output width does not fit the checkpoint."""
        (inp,), (out,) = self.session.get_inputs(), self.session.get_outputs()
        if (inp.name, inp.shape[1:], out.name, out.shape[1:]) != (
                INPUT, [max_len], OUTPUT, [n_items + 1]):
            raise AdarecError(
                f"{source} maps {inp.name} {inp.shape} to {out.name} {out.shape}, but the "
                f"checkpoint needs {INPUT} [batch, {max_len}] -> {OUTPUT} [batch, "
                f"{n_items + 1}]: export it from this checkpoint"
            )


def make_engine(
    name: str, model: nn.Module, *, n_items: int, max_len: int, device: torch.device,
    threads: int, onnx: Path | None = None,
) -> ScoreEngine:
    """``torch``, or ``onnxruntime`` on the CPU over the graph in ``onnx`` (written by
    `adarec export` from the same checkpoint) or, without it, the model exported now."""
    if name == "torch":
        if onnx is not None:
            raise AdarecError("--onnx is for --engine onnxruntime")
        return TorchEngine(model, n_items=n_items, device=device)
    if name == "onnxruntime":
        if device.type != "cpu":
            raise AdarecError("--engine onnxruntime runs on the CPU here; use --device cpu")
        if onnx is None:
            return OnnxEngine(onnx_bytes(model, n_items=n_items, max_len=max_len),
                              threads=threads)
        if not onnx.is_file():
            raise AdarecError(f"no ONNX file at {onnx}")
        check_deterministic(model)
        try:
            engine = OnnxEngine(str(onnx), threads=threads)
        except AdarecError:
            raise
        except Exception as exc:  # onnxruntime's own errors: a corrupt or foreign file
            raise AdarecError(f"{onnx} is not a loadable ONNX model "
                              f"({type(exc).__name__})") from None
        engine.check_shapes(n_items, max_len, onnx)
        return engine
    raise AdarecError(f"--engine must be one of {', '.join(ENGINES)}, got {name!r}")

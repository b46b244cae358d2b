"""Self-describing checkpoints: weights plus everything needed to rebuild the model.

A checkpoint holds only plain containers, numbers, strings and tensors, so it loads with
``torch.load(weights_only=True)``. Every file is written atomically (`write_atomic`): a
crash or a kill at any moment leaves either the previous file or the new one, whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
from collections.abc import Callable
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

# Test hook, called with the target path halfway through writing each checkpoint file (half
# of its bytes in the temporary file, nothing renamed yet): tests make it raise, to stand
# for a kill or a full disk at the worst moment. See also ``ADAREC_KILL_IN_WRITE``.
WRITE_HOOK: Callable[[Path], None] | None = None
_writes = 0


class CheckpointWriteError(AdarecError):
    """A checkpoint file could not be written; the file it would have replaced is intact."""


def _mid_write(path: Path) -> None:
    """Run `WRITE_HOOK`; with ``ADAREC_KILL_IN_WRITE=N`` in the environment, SIGKILL this
    process in the middle of its N-th checkpoint write (for `benchmarks/kill_resume.py` and
    the tests that kill a real process)."""
    global _writes
    _writes += 1
    if WRITE_HOOK is not None:
        WRITE_HOOK(path)
    if os.environ.get("ADAREC_KILL_IN_WRITE") == str(_writes):
        os.kill(os.getpid(), signal.SIGKILL)


def write_atomic(path: Path, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically: a temporary file beside it, flushed to
    disk (fsync), then renamed over ``path`` and the folder synced. An ``OSError`` (full
    disk, no permission) becomes a `CheckpointWriteError`; ``path`` is then untouched."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            _mid_write(path)
            f.write(data[len(data) // 2:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise CheckpointWriteError(
            f"could not write the checkpoint {path} ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    path: Path, *, model: nn.Module, config: RunConfig, info: DataInfo, epoch: int,
    metrics: dict[str, Any], extra: dict[str, Any] | None = None,
) -> None:
    """Write the model's checkpoint atomically (`write_atomic`); ``extra`` adds entries
    (e.g. the training state of ``last.pt``, see `adarec.resume`)."""
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "data_info": dataclasses.asdict(info),
        "epoch": epoch,
        "metrics": metrics,
        "versions": {"adarec": adarec.__version__, "torch": str(torch.__version__)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    write_atomic(path, state)


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

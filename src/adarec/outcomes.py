"""Per-user test outcomes of a run, stored compactly beside its results (docs/reports.md).

One ``.npz`` file (compressed numpy arrays, one row per test user, in the test split's order):

* ``user`` (U,) int64: the user's 0-based row in the dataset (`EvalSplit.users`), the key
  that pairs two runs on the same data;
* ``history_length`` (U,) int32: the user's whole history before the answer;
* ``rank_<mask>`` (U,) int32: the 1-based rank of the answer under each history mask that
  the run evaluated (``rank_inf``, ``rank_zero``; see `adarec.evaluate`);
* any extra per-user arrays of the final pass (`adarec.probe`), such as ADARec's chosen
  ``depth``.

A run directory holds ``outcomes.npz``; a results folder holds ``<name>.outcomes.npz`` beside
``<name>.json``. Paired tests (`adarec.significance`) read these files.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from adarec.data.splits import EvalSplit
from adarec.errors import AdarecError

FILE_NAME = "outcomes.npz"


@dataclass
class Outcomes:
    """Per-user test outcomes (see the module docstring); ``extra`` holds named per-user
    arrays of the final pass."""

    user: np.ndarray
    history_length: np.ndarray
    ranks: dict[str, np.ndarray]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user)


def outcomes_of(
    split: EvalSplit, ranks: dict[str, torch.Tensor], extra: dict[str, torch.Tensor] | None = None,
) -> Outcomes:
    """The outcomes of ``split``'s rows from their ranks per history mask (each (U,))."""
    def plain(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    return Outcomes(
        user=plain(split.users).astype(np.int64),
        history_length=plain(split.history_lengths).astype(np.int32),
        ranks={mask: plain(r).astype(np.int32) for mask, r in ranks.items()},
        extra={name: plain(v) for name, v in (extra or {}).items()},
    )


def save_outcomes(outcomes: Outcomes, path: Path) -> None:
    """Write ``outcomes`` to ``path`` atomically (a temporary file, then a rename)."""
    arrays = {"user": outcomes.user, "history_length": outcomes.history_length,
              **{f"rank_{m}": r for m, r in outcomes.ranks.items()},
              **{f"extra_{n}": v for n, v in outcomes.extra.items()}}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def load_outcomes(path: Path) -> Outcomes:
    """Read a file written by `save_outcomes`; a foreign or damaged file is an `AdarecError`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise AdarecError(f"{path} is not a readable outcomes file ({exc})") from None
    if "user" not in arrays or "history_length" not in arrays:
        raise AdarecError(f"{path} is not an outcomes file (no user / history_length arrays)")
    ranks = {n.removeprefix("rank_"): v for n, v in arrays.items() if n.startswith("rank_")}
    extra = {n.removeprefix("extra_"): v for n, v in arrays.items() if n.startswith("extra_")}
    if not ranks or any(len(v) != len(arrays["user"]) for v in ranks.values()):
        raise AdarecError(f"{path}: the rank arrays are missing or differ in length from user")
    return Outcomes(arrays["user"], arrays["history_length"], ranks, extra)

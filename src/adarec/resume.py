"""Resumable runs: ``last.pt``, written at the end of every epoch, and what reads it back.

``last.pt`` is a checkpoint (`adarec.checkpoint`) of the whole model after the last
completed epoch, plus a ``resume`` entry (`Progress`): which training stage is running (the
model, or one member of the release's ensemble) and the finished stages' outcomes; the
stage's epoch, early-stopping state, epoch logs and elapsed time; the optimiser's state;
every random state (`adarec.state`). Restoring all of it and training on gives, on the CPU,
the same numbers as the run left alone (docs/resume.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from adarec.checkpoint import load_checkpoint, save_checkpoint
from adarec.config import RunConfig, config_from_dict
from adarec.data.load import DataInfo
from adarec.errors import AdarecError

LAST = "last.pt"
SESSIONS = "sessions.jsonl"
FINAL_REASONS = ("patience",)


@dataclass
class Progress:
    """Where training stands after an epoch (all plain values and tensors).

    ``stage`` is the index of the stage training (0 for a model that trains whole) and
    ``finished`` the outcomes of the stages before it (``best_epoch``, ``reason``,
    ``logs``); ``epoch`` the stage's last completed epoch (0: none yet), ``reason`` why it
    stopped there (``None`` while it goes on); ``logs`` its epoch logs as written to
    ``metrics.jsonl``; ``elapsed`` its seconds so far, for ``--max-minutes``.
    """

    stage: int = 0
    epoch: int = 0
    best: float = float("-inf")
    best_epoch: int = 0
    reason: str | None = None
    elapsed: float = 0.0
    logs: list[dict[str, Any]] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)
    max_minutes: float | None = None  # the limit this stage ran under
    optimizer: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] | None = None  # no loss scaler today (bf16 needs none)
    rng: dict[str, Any] = field(default_factory=dict)


def save_last(
    run_dir: Path, *, model: nn.Module, config: RunConfig, info: DataInfo, progress: Progress,
) -> None:
    """Write ``run_dir/last.pt`` atomically (the whole ``model``'s current weights)."""
    metrics = progress.logs[-1]["valid"] if progress.logs else {}
    save_checkpoint(run_dir / LAST, model=model, config=config, info=info,
                    epoch=progress.epoch, metrics=metrics,
                    extra={"resume": dataclasses.asdict(progress)})


def load_last(run_dir: Path) -> tuple[dict[str, Any], Progress]:
    """The checkpoint in ``run_dir/last.pt`` and its `Progress`."""
    path = run_dir / LAST
    if not run_dir.is_dir():
        raise AdarecError(f"--resume {run_dir}: no such run directory")
    if not path.is_file():
        raise AdarecError(f"{run_dir} has no {LAST}: nothing to resume (its training never "
                          "began, or it was written by an adarec without resumable runs)")
    state = load_checkpoint(path)
    if "resume" not in state:
        raise AdarecError(f"{path} holds no training state to resume from")
    return state, Progress(**state["resume"])


def record_session(run_dir: Path, start: Progress | None, **facts: Any) -> None:
    """Append to ``run_dir/sessions.jsonl`` where this stretch of training starts (``None``:
    from the beginning; else after ``start``'s stage and epoch) with ``facts`` (commit,
    device, ...), so that a run resumed across machines or code versions says so."""
    where = None if start is None else {"stage": start.stage, "epoch": start.epoch}
    line = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_after": where, **facts}
    with open(run_dir / SESSIONS, "a") as f:
        f.write(json.dumps(line) + "\n")


def read_sessions(run_dir: Path) -> list[dict[str, Any]]:
    """The lines of ``run_dir/sessions.jsonl`` (none for a run written before it existed)."""
    path = run_dir / SESSIONS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def refuse_changes(given: dict[str, Any]) -> None:
    """``--resume`` trains on with the run's saved configuration: any option in ``given``
    (flag -> value, ``None`` or empty when absent) that would change the run is an error."""
    named = [flag for flag, value in given.items() if value not in (None, [], ())]
    if named:
        raise AdarecError(f"--resume trains on with the run's saved configuration; "
                          f"{', '.join(named)} would change the run (only --max-epochs and "
                          "--max-minutes may be given, to raise them)")


def resume_config(
    run_dir: Path, *, max_epochs: int | None = None, max_minutes: float | None = None,
    finished_ok: bool = False,
) -> RunConfig:
    """The configuration ``run_dir/last.pt`` was trained with, with ``max_epochs`` and
    ``max_minutes`` raised where given (lowering them, or adding a time limit to a run that
    had none, would change the run and is refused). A run with nothing left to train is
    refused too, unless ``finished_ok``."""
    state, _ = load_last(run_dir)
    data = config_from_dict(state["config"]).to_dict()
    train = data["train"]
    if max_epochs is not None:
        if max_epochs < train["max_epochs"]:
            raise AdarecError(f"--max-epochs may only be raised on --resume: the run has "
                              f"max_epochs={train['max_epochs']}, got {max_epochs}")
        train["max_epochs"] = max_epochs
    if max_minutes is not None:
        if train["max_minutes"] is None:
            raise AdarecError("--max-minutes may only be raised on --resume: the run has no "
                              "time limit")
        if max_minutes < train["max_minutes"]:
            raise AdarecError(f"--max-minutes may only be raised on --resume: the run has "
                              f"max_minutes={train['max_minutes']}, got {max_minutes}")
        train["max_minutes"] = max_minutes
    config = config_from_dict(data)
    if not finished_ok and not resumable(run_dir, config):
        stop = json.loads((run_dir / "results.json").read_text()).get("stop_reason")
        raise AdarecError(
            f"{run_dir} has finished (stop: {stop}); nothing to resume. A stop by "
            "max_epochs or time_limit trains on when --max-epochs or --max-minutes is raised")
    return config


def resumable(run_dir: Path, config: RunConfig) -> bool:
    """Whether ``run_dir`` has training left under ``config``: it has no results yet, or
    they say ``interrupted``, or its last stage stopped where ``config`` goes on."""
    results = run_dir / "results.json"
    try:
        stop = json.loads(results.read_text()).get("stop_reason")
    except (OSError, ValueError):
        return True
    return stop == "interrupted" or reopens(load_last(run_dir)[1], config)


def check_resume_data(saved: dict[str, Any], info: DataInfo, run_dir: Path) -> None:
    """Refuse to resume on data other than the run's (``saved``: its ``data_info``): the
    counts, and the data fingerprint where the run recorded one (runs written before
    fingerprints are checked on counts only), so a file of the same size with other
    contents is refused too."""
    now = dataclasses.asdict(info)
    keys = ("n_users", "n_items", "n_interactions", "max_len")
    if saved.get("fingerprint"):
        keys += ("fingerprint",)
    if any(saved.get(k) != now[k] for k in keys):
        got = ", ".join(f"{k} {saved.get(k)} -> {now[k]}" for k in keys if saved.get(k) != now[k])
        raise AdarecError(f"the data of {run_dir} has changed since it was trained ({got}); "
                          "cannot resume")


def reopens(progress: Progress, config: RunConfig) -> bool:
    """Whether a stage that stopped (``progress.reason``) trains on under ``config``: after
    ``max_epochs`` when that was raised, after ``time_limit`` when the limit was raised."""
    t = config.train
    if progress.reason == "max_epochs":
        return progress.epoch < t.max_epochs
    if progress.reason == "time_limit":
        return t.max_minutes is None or (progress.max_minutes or 0) < t.max_minutes
    return False


def rewrite_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    """Replace ``path`` atomically by ``lines`` as JSON lines (the completed epochs only)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(line) + "\n" for line in lines))
    os.replace(tmp, path)


def resume_command(run_dir: Path, **raised: Any) -> str:
    """The command that resumes ``run_dir`` (with ``--max-epochs`` etc. where given)."""
    words = ["adarec", "train", "--resume", str(run_dir)]
    for name, value in raised.items():
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(words)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files a killed write left behind (harmless; removed for tidiness)."""
    for tmp in run_dir.glob("*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()

"""Resumable runs (docs/resume.md): a run killed at an epoch boundary, in the middle of an
epoch or in the middle of a checkpoint write, then resumed, ends with exactly the epoch logs
and test metrics of the same run left alone, for every model (the release ensemble too).

A "kill" here is a `Killed` exception (a BaseException nothing catches) thrown from a
hook; nothing of the killed call is used afterwards but its run directory. One test kills
a real process with SIGKILL in the middle of a checkpoint write.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import adarec.checkpoint as ckpt
import adarec.train as train_mod
from adarec.checkpoint import CheckpointWriteError, load_checkpoint, write_atomic
from adarec.config import load_config
from adarec.divergence import Diverged, FiniteWatch, NonFiniteLoss
from adarec.errors import AdarecError
from adarec.resume import LAST, load_last, refuse_changes, resume_config
from adarec.state import capture_rng, restore_rng
from adarec.train import RunInterrupted, fit

TINY = [
    "data.dataset=synthetic", "data.synthetic_users=120", "data.synthetic_items=50",
    "data.max_len=20", "model.hidden_size=16", "model.num_layers=1", "train.batch_size=40",
    "train.max_epochs=3", "intents.n_intents=4", "adarec.max_depth=3",
]
PRESETS = {"sasrec": "default", "elcrec": "elcrec-beauty", "adarec": "adarec-beauty",
           "release": "release-beauty"}


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the package catches it."""


def config(preset: str, root: Path, *extra: str):
    return load_config(preset, overrides=[*TINY, f"output_dir={root}", *extra])


def outcome(run_dir: Path) -> tuple[list, dict]:
    """What must repeat exactly: every epoch's losses and validation metrics (per member),
    and the test results."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [(x.get("member"), x["epoch"], x["losses"], x["valid"]) for x in lines]
    r = json.loads((run_dir / "results.json").read_text())
    keys = ("test", "test_by_history_mask", "best_epoch", "stop_reason", "epochs_run", "valid")
    return epochs, {k: r[k] for k in keys}


class Kill:
    """Arms one kill in the next `fit`: at the ``n``-th end-of-epoch ``last.pt`` written
    (``boundary``), the ``n``-th training step (``step``) or halfway through the ``n``-th
    checkpoint file written (``write``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mp = monkeypatch

    def arm(self, where: str, n: int) -> None:
        self.mp.undo()
        count = [0]

        def tick() -> None:
            count[0] += 1
            if count[0] == n:
                raise Killed(f"{where} {n}")

        if where == "boundary":
            save = train_mod.save_last

            def save_then_die(*args, **kwargs):
                save(*args, **kwargs)
                tick()
            self.mp.setattr(train_mod, "save_last", save_then_die)
        elif where == "step":
            make = train_mod.loss_function

            def counted(*args, **kwargs):
                fn = make(*args, **kwargs)
                return lambda batch: (tick(), fn(batch))[1]
            self.mp.setattr(train_mod, "loss_function", counted)
        else:
            self.mp.setattr(ckpt, "WRITE_HOOK", lambda path: tick())


def killed_and_resumed(cfg, kill: Kill, kills: list[tuple[str, int]], name: str) -> Path:
    """Run ``cfg`` under ``kills`` one after the other, resuming after each, to the end."""
    kill.arm(*kills[0])
    with pytest.raises(Killed):
        fit(cfg, run_name=name, progress=False)
    run_dir = Path(cfg.output_dir) / name
    for where in [*kills[1:], None]:
        if where is None:
            kill.mp.undo()
        else:
            kill.arm(*where)
        try:
            fit(resume_config(run_dir), progress=False, resume=run_dir)
        except Killed:
            assert where is not None
    return run_dir


# Kills per model: at the end of an epoch, in the middle of one, in the middle of a
# checkpoint write (best.pt or last.pt); the ensemble's last kills fall in its 2nd member.
KILLS = {
    "sasrec": [("boundary", 2), ("step", 2), ("write", 2)],
    "elcrec": [("step", 4), ("write", 1), ("boundary", 1)],
    "adarec": [("write", 3), ("boundary", 1), ("step", 3)],
    "release": [("boundary", 3), ("step", 5), ("write", 2)],
}


@pytest.mark.parametrize("model", list(PRESETS))
def test_killed_and_resumed_runs_end_exactly_as_runs_left_alone(model, tmp_path, monkeypatch):
    cfg = config(PRESETS[model], tmp_path)
    ref_dir, _ = fit(cfg, run_name="alone", progress=False)
    run_dir = killed_and_resumed(cfg, Kill(monkeypatch), KILLS[model], "killed")
    assert outcome(run_dir) == outcome(ref_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((ref_dir / "metrics.jsonl").read_text().splitlines())
    assert not list(run_dir.glob("*.tmp"))
    for a, b in zip(load_checkpoint(ref_dir / "best.pt")["state_dict"].values(),
                    load_checkpoint(run_dir / "best.pt")["state_dict"].values(), strict=True):
        assert torch.equal(a, b)


def test_tensorboard_keeps_one_value_per_step_after_a_resume(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config("default", tmp_path, "train.max_epochs=4")
    # Killed after epoch 3's scalars are logged but before its last.pt: epoch 3 runs again.
    run_dir = killed_and_resumed(cfg, Kill(monkeypatch), [("boundary", 4)], "tb")
    assert load_checkpoint(run_dir / LAST)["epoch"] == 4
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    steps = [e.step for e in events.Scalars("valid/NDCG@20")]
    assert steps == [1, 2, 3, 4]


def test_the_results_say_where_each_stretch_of_training_began(tmp_path, monkeypatch):
    cfg = config("default", tmp_path)
    calls = iter(range(100))  # each look at the checkout gives another "commit"
    monkeypatch.setattr(train_mod, "commit_id", lambda: f"c{next(calls)}")
    kill = Kill(monkeypatch)
    kill.mp = pytest.MonkeyPatch()  # its undo() must not undo the commit patch
    # The 3rd last.pt is epoch 2's (the 1st is written before epoch 1).
    run_dir = killed_and_resumed(cfg, kill, [("boundary", 3)], "sessions")
    kill.mp.undo()
    results = json.loads((run_dir / "results.json").read_text())
    sessions = results["sessions"]
    assert [s["resumed_after"] for s in sessions] == [None, {"stage": 0, "epoch": 2}]
    # The commit a stretch started with is the one the results name: HEAD may move later.
    assert [s["commit"] for s in sessions] == ["c0", "c1"]
    assert results["commit"] == "c1"
    assert all({"started", "commit", "device", "processes", "torch"} <= set(s)
               for s in sessions)
    assert sessions[0]["device"].startswith("cpu")


def test_sigkill_in_the_middle_of_a_checkpoint_write(tmp_path):
    """A real process, killed by SIGKILL halfway through its 3rd checkpoint file: the file
    it was replacing is intact, and the resumed run ends as the run left alone."""
    cfg = config("default", tmp_path, "train.max_epochs=2")
    ref_dir, _ = fit(cfg, run_name="alone", progress=False)
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "ADAREC_KILL_IN_WRITE": "3"}
    args = [sys.executable, "-m", "adarec", "train", "--no-progress", "--run-name", "killed",
            "--output-dir", str(tmp_path), "--max-epochs", "2",
            *[a for o in TINY if not o.startswith("train.max_epochs") for a in ("--set", o)]]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr
    run_dir = tmp_path / "killed"
    assert list(run_dir.glob("*.tmp"))  # the torn temporary file is still there
    assert load_checkpoint(run_dir / LAST)["epoch"] == 0  # writes: last@0, best@1, last@1
    env.pop("ADAREC_KILL_IN_WRITE")
    done = subprocess.run([sys.executable, "-m", "adarec", "train", "--no-progress",
                           "--resume", str(run_dir)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert outcome(run_dir) == outcome(ref_dir)


def test_random_states_round_trip_exactly():
    gen = torch.Generator().manual_seed(4)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = capture_rng(gen)

    def draw():
        return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(),
                torch.rand(2, generator=gen).tolist())

    first = draw()
    restore_rng(saved, gen)
    assert draw() == first


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    write_atomic(path, {"format": ckpt.FORMAT, "epoch": 1})

    def full_disk(target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "WRITE_HOOK", full_disk)
    with pytest.raises(CheckpointWriteError, match="No space left"):
        write_atomic(path, {"format": ckpt.FORMAT, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_an_unwritable_checkpoint_ends_the_run_and_the_previous_one_resumes(
        tmp_path, monkeypatch):
    cfg = config("default", tmp_path, "train.max_epochs=2")
    writes = [0]

    def fail_third(target: Path) -> None:  # last@0, best@1, then last@1 fails
        writes[0] += 1
        if writes[0] == 3:
            raise OSError(13, "Permission denied")

    monkeypatch.setattr(ckpt, "WRITE_HOOK", fail_third)
    with pytest.raises(CheckpointWriteError, match="last.pt.*Permission denied"):
        fit(cfg, run_name="full", progress=False)
    monkeypatch.undo()
    run_dir = tmp_path / "full"
    assert load_last(run_dir)[1].epoch == 0
    _, results = fit(resume_config(run_dir), progress=False, resume=run_dir)
    assert results["epochs_run"] == 2


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = config("default", tmp_path)
    make, calls = train_mod.loss_function, [0]

    def nan_at_step_5(*args, **kwargs):  # 3 steps per epoch: epoch 2, step 2
        fn = make(*args, **kwargs)

        def loss(batch):
            out = fn(batch)
            calls[0] += 1
            return out._replace(total=out.total * float("nan")) if calls[0] == 5 else out
        return loss

    monkeypatch.setattr(train_mod, "loss_function", nan_at_step_5)
    with pytest.raises(Diverged, match="nan at epoch 2, step 2.*last.pt \\(epoch 1\\)"):
        fit(cfg, run_name="nan", progress=False)
    run_dir = tmp_path / "nan"
    for name in ("best.pt", LAST):
        state = load_checkpoint(run_dir / name)
        assert state["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values()
                   if v.is_floating_point())
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_the_gpu_watch_reads_the_first_bad_step_once_per_epoch():
    watch = FiniteWatch(torch.device("cpu"))
    watch.eager = False  # the device-side path a GPU takes, on CPU tensors
    for step, value in enumerate([1.0, float("inf"), float("nan"), 2.0], start=1):
        watch.update(step, torch.tensor(value))
    with pytest.raises(NonFiniteLoss) as bad:
        watch.check()
    assert (bad.value.step, bad.value.value) == (2, float("inf"))


def test_ctrl_c_says_interrupted_and_how_to_resume(tmp_path, monkeypatch):
    cfg = config("default", tmp_path, "train.max_epochs=2")
    make, calls = train_mod.loss_function, [0]

    def interrupt_at_step_4(*args, **kwargs):
        fn = make(*args, **kwargs)

        def loss(batch):
            calls[0] += 1
            if calls[0] == 4:
                raise KeyboardInterrupt
            return fn(batch)
        return loss

    monkeypatch.setattr(train_mod, "loss_function", interrupt_at_step_4)
    with pytest.raises(RunInterrupted, match="epoch 1; resume with: adarec train --resume"):
        fit(cfg, run_name="ctrl-c", progress=False)
    run_dir = tmp_path / "ctrl-c"
    assert json.loads((run_dir / "results.json").read_text())["stop_reason"] == "interrupted"
    monkeypatch.undo()
    _, results = fit(resume_config(run_dir), progress=False, resume=run_dir)
    assert results["epochs_run"] == 2 and results["stop_reason"] == "max_epochs"


def test_resume_refuses_changes_and_finished_runs(tmp_path):
    with pytest.raises(AdarecError, match="--seed, --set would change the run"):
        refuse_changes({"--seed": 3, "--set": ["train.lr=1"], "--device": None})
    cfg = config("default", tmp_path, "train.max_epochs=1")
    run_dir, _ = fit(cfg, run_name="done", progress=False)
    with pytest.raises(AdarecError, match="may only be raised"):
        resume_config(run_dir, max_epochs=0)
    with pytest.raises(AdarecError, match="no time limit"):
        resume_config(run_dir, max_minutes=5)
    with pytest.raises(AdarecError, match="finished \\(stop: max_epochs\\)"):
        resume_config(run_dir)
    _, more = fit(resume_config(run_dir, max_epochs=2), progress=False, resume=run_dir)
    assert more["epochs_run"] == 2
    with pytest.raises(AdarecError, match="nothing to resume"):
        resume_config(tmp_path)


def test_reproduce_resumes_an_unfinished_run(tmp_path, monkeypatch):
    from adarec.reproduce import reproduce

    said: list[str] = []
    kw = {"overrides": [o for o in TINY if not o.startswith("train.max_epochs")]
          + ["train.max_epochs=2"], "tag": None, "results_root": tmp_path / "results",
          "runs_dir": tmp_path / "runs", "progress": False, "echo": said.append}
    Kill(monkeypatch).arm("boundary", 2)  # after epoch 1's last.pt
    with pytest.raises(Killed):
        reproduce(["default"], [1], **kw)
    monkeypatch.undo()
    reproduce(["default"], [1], **kw)
    assert any("resuming" in line for line in said)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["default-seed1"]
    results = json.loads((tmp_path / "results" / "synthetic" / "default-seed1.json").read_text())
    assert results["epochs_run"] == 2
    lines = (tmp_path / "results" / "synthetic" / "default-seed1.metrics.jsonl").read_text()
    assert [json.loads(x)["epoch"] for x in lines.splitlines()] == [1, 2]


def test_the_cli_refuses_options_that_would_change_a_resumed_run(tmp_path):
    from typer.testing import CliRunner

    from adarec.cli import app

    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--seed", "3",
                                      "--set", "train.lr=1"])
    assert isinstance(result.exception, AdarecError)
    assert "--seed, --set would change the run" in str(result.exception)


def test_resume_refuses_other_data_of_the_same_size(tmp_path):
    """The same counts (users, items, interactions, max_len) but other contents: the data
    fingerprint tells them apart, and the resume is refused before any training."""
    data = tmp_path / "log.txt"
    rows = [[u] + [(u + 3 * j) % 40 + 1 for j in range(5 + u % 4)] for u in range(1, 81)]

    def write() -> None:
        data.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))

    write()
    cfg = config("default", tmp_path, "data.dataset=file", f"data.data_file={data}",
                 "train.max_epochs=1")
    run_dir, _ = fit(cfg, run_name="fp", progress=False)
    rows[2][1], rows[2][2] = rows[2][2], rows[2][1]  # every count stays, the contents change
    write()
    with pytest.raises(AdarecError, match="fingerprint"):
        fit(resume_config(run_dir, max_epochs=2), progress=False, resume=run_dir)

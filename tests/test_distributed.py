"""Training under torchrun (docs/distributed.md), on the CPU with gloo: two processes give the
gradients of one process on the same global batch; `adarec train` under torchrun writes one
run close to the single-process run, and resumes exactly."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import ddp_step
import pytest
import torch
import torch.multiprocessing as mp
from inprocess_cli import run_cli, user_error

from adarec import distributed
from adarec.config import load_config
from adarec.train import fit

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this PyTorch has no torch.distributed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_grads(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "grads.pt"
    for attempt in range(3):
        # gloo's start on loopback is flaky in some sandboxes: a rank may abort while the
        # group connects (SIGABRT, "terminate called without an active exception"), before
        # any step runs; a new group on a new port then starts cleanly.
        try:
            mp.spawn(ddp_step.worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
            break
        except mp.ProcessExitedException as exc:
            if attempt == 2 or exc.signal_name != "SIGABRT":
                raise
    return torch.load(out, weights_only=True)


def test_a_failure_of_rank_0_alone_stops_every_process(two_process_grads: dict) -> None:
    main, other = two_process_grads["from_main_failure"]
    assert main.startswith("ZeroDivisionError")  # rank 0 raises its own exception
    assert other.startswith("RuntimeError: rank 0 failed: ZeroDivisionError")


@pytest.mark.parametrize("name", list(ddp_step.CASES))
def test_two_processes_give_the_global_batch_gradient(
    name: str, two_process_grads: dict, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    ddp_step.fix_randomness(monkeypatch.setattr)
    alone = ddp_step.step_gradients(name)
    total = alone.pop("_real_targets")
    got = two_process_grads[name]
    counts = got["counts"]
    # The shares differ in size, so a plain average of the two local means would be wrong.
    assert sum(counts) == float(total) and counts[0] != counts[1]
    assert set(got["grads"]) == set(alone)
    flat = torch.cat([g.flatten() for g in alone.values()])
    both = torch.cat([got["grads"][n].flatten() for n in alone])
    tol = ddp_step.TOLERANCE.get(name, 1e-5)
    assert (both - flat).norm() <= tol * flat.norm()  # the whole gradient
    for param, want in alone.items():  # and each parameter's (1e-8: float noise, ADARec's
        diff = (got["grads"][param] - want).norm()  # router starts near 1e-10)
        assert diff <= tol * want.norm() + 1e-8, (param, float(diff), float(want.norm()))


def torchrun_env(**extra: str) -> dict[str, str]:
    """The environment of a torchrun job started by a test: this source tree, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra,
           "PYTHONPATH": os.pathsep.join([str(Path(distributed.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    return env


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = torchrun_env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "adarec", "train", "--no-progress", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    done = torchrun("--max-epochs", "3", "--output-dir", str(out), cwd=out)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]  # one run directory, not two
    assert done.stdout.count("run directory:") == 1  # rank 0 alone reports
    return run_dir


def test_torchrun_train_writes_one_run_close_to_one_process(
    ddp_run: Path, tmp_path: Path,
) -> None:
    names = {p.name for p in ddp_run.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "best.pt", "last.pt", "results.json",
            "outcomes.npz", "tb"} <= names
    assert "INCOMPLETE" not in names and not any(n.endswith(".tmp") for n in names)
    results = json.loads((ddp_run / "results.json").read_text())
    assert results["processes"] == 2 and results["epochs_run"] == 3
    assert [x["epoch"] for x in lines(ddp_run)] == [1, 2, 3]
    config = load_config("default", overrides=["train.max_epochs=3",
                                               f"output_dir={tmp_path}"])
    alone_dir, alone = fit(config, progress=False)
    # Different dropout draws per process: close, not equal.
    for metric in ("NDCG@20", "HR@20"):
        assert abs(results["test"]["all"][metric] - alone["test"]["all"][metric]) < 0.02
    assert results["test"]["all"]["users"] == alone["test"]["all"]["users"]
    for ours, theirs in zip(lines(ddp_run), lines(alone_dir), strict=True):
        assert abs(ours["losses"]["total"] - theirs["losses"]["total"]) < 0.02 * theirs[
            "losses"]["total"]


def test_torchrun_resume_ends_as_the_run_left_alone(ddp_run: Path, tmp_path: Path) -> None:
    torchrun("--max-epochs", "2", "--output-dir", str(tmp_path), "--run-name", "cut",
             cwd=tmp_path)
    cut = tmp_path / "cut"
    assert json.loads((cut / "results.json").read_text())["stop_reason"] == "max_epochs"
    torchrun("--resume", str(cut), "--max-epochs", "3", cwd=tmp_path)
    assert lines(cut) == [{**x, "train_seconds": y["train_seconds"],
                           "valid_seconds": y["valid_seconds"]}
                          for x, y in zip(lines(ddp_run), lines(cut), strict=True)]
    a = json.loads((cut / "results.json").read_text())
    b = json.loads((ddp_run / "results.json").read_text())
    assert a["test"] == b["test"]
    shutil.rmtree(cut)


def test_a_batch_that_does_not_split_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    out = user_error(run_cli("train", "--output-dir", tmp_path, "--no-progress"),
                     "does not split over 3 processes")
    assert "multiple of the number of processes" in out
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_compile_is_refused_under_torchrun(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    user_error(run_cli("train", "--output-dir", tmp_path, "--no-progress", "--set",
                       "runtime.compile=true"), "runtime.compile is not supported under torchrun")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["reproduce", "sweep"])
def test_commands_that_train_several_runs_refuse_torchrun(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {low: 0.0001, high: 0.01, log: true}\n")
    args = {"reproduce": ["--preset", "default"],
            "sweep": ["--preset", "default", "--space", space]}[command]
    user_error(run_cli(command, *args), "under torchrun only `adarec train`")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_worker_killed_mid_run_is_restarted_and_resumes_exactly(
    ddp_run: Path, tmp_path: Path,
) -> None:
    """`torchrun --max-restarts 3`: rank 1 SIGKILLed after the first epoch; torchrun restarts
    both processes, they resume from last.pt and end as the run left alone (`ddp_run`).
    Three restarts, not one: gloo's start on loopback sometimes fails (see
    `two_process_grads`), and a restarted group must connect again."""
    import signal
    import time

    env = torchrun_env(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "--max-restarts", "3", "-m", "adarec", "train", "--no-progress",
           "--max-epochs", "3", "--output-dir", str(tmp_path), "--run-name", "elastic"]
    job = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    run_dir, killed = tmp_path / "elastic", None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            ranks = distributed.worker_pids(job.pid)
            if 1 in ranks:
                os.kill(ranks[1], signal.SIGKILL)
                killed = ranks[1]
        time.sleep(0.02)
    try:
        out, _ = job.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        job.kill()  # torchrun's workers are its process group's; end them too
        for pid in distributed.worker_pids(job.pid).values():
            os.kill(pid, signal.SIGKILL)
        out, _ = job.communicate()
        if len(lines(run_dir)) < 3 and "Traceback" not in out:
            pytest.skip("the restarted processes did not connect within 300 s (gloo on "
                        "loopback in this sandbox); nothing failed")
        raise AssertionError(out[-3000:]) from None
    assert killed is not None, out[-3000:]
    assert job.returncode == 0, out[-3000:]
    sessions = (run_dir / "sessions.jsonl").read_text().splitlines()
    assert len(sessions) >= 2  # the first attempt and the restarted one(s)
    assert lines(run_dir) == [{**x, "train_seconds": y["train_seconds"],
                               "valid_seconds": y["valid_seconds"]}
                              for x, y in zip(lines(ddp_run), lines(run_dir), strict=True)]
    a = json.loads((run_dir / "results.json").read_text())
    b = json.loads((ddp_run / "results.json").read_text())
    assert a["test"] == b["test"]


def test_max_restarts_needs_a_run_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    user_error(run_cli("train", "--output-dir", tmp_path, "--no-progress", "--run-name", "x"),
               "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")
    user_error(run_cli("train", "--output-dir", tmp_path, "--no-progress"),
               "give --run-name")
    (tmp_path / "taken").mkdir()
    user_error(run_cli("train", "--output-dir", tmp_path, "--no-progress", "--run-name",
                       "taken"), "exists; under torchrun --max-restarts give a new --run-name")

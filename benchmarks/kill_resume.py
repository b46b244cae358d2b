"""Kill a training run at random moments, resume it each time, compare with the run left alone.

Usage (a script, not a test; CPU only, where runs repeat to the last digit):

    python benchmarks/kill_resume.py --preset default --kills 20 [--set KEY=VALUE ...] \
        [--write-share 0.25] [--seed 0] [--workdir DIR] [--json FILE]

First the run is trained once, left alone (``adarec train``, one process). Then the same
run is started and SIGKILLed: after a random delay, uniform over the lone run's wall time,
or (a ``--write-share`` of the kills) halfway through a random checkpoint write
(``ADAREC_KILL_IN_WRITE``, see `adarec.checkpoint`); then resumed with ``adarec train
--resume``, killed again, and so on. A trial ends when a resumed process finishes on its
own; the next kill starts a new trial. After ``--kills`` kills the last trial is resumed to
its end. Each trial must end with the lone run's per-epoch losses and validation metrics
and its test results, exactly; a kill counts as identical when its trial does. Prints one
line per kill (where it landed) and ``N/N identical``; exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def outcome(run_dir: Path) -> dict:
    """What must repeat exactly: the epoch logs (but their timings) and the test results."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    r = json.loads((run_dir / "results.json").read_text())
    keys = ("test", "test_by_history_mask", "best_epoch", "stop_reason", "epochs_run", "valid")
    return {"epochs": [(x.get("member"), x["epoch"], x["losses"], x["valid"]) for x in lines],
            **{k: r[k] for k in keys}}


class _NoTensors(pickle.Unpickler):
    """Unpickles a checkpoint's ``data.pkl`` with every torch object as ``None``: enough to
    read its plain entries without importing torch (a child process would take seconds)."""

    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "torch":
            return lambda *args, **kwargs: None
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return None


def last_epoch(run_dir: Path) -> str:
    """Where ``run_dir/last.pt`` stands, as member/epoch ("none" without one)."""
    path = run_dir / "last.pt"
    if not path.is_file():
        return "none"
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        state = _NoTensors(io.BytesIO(z.read(name))).load()
    return f"{state['resume']['stage']}/{state['epoch']}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--write-share", type=float, default=0.25,
                   help="share of the kills made halfway through a checkpoint write")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp folder)")
    p.add_argument("--json", type=Path, help="write every kill and trial here")
    args = p.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("ADAREC_KILL_IN_WRITE", None)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kill_resume-"))
    base = [sys.executable, "-m", "adarec", "train", "--no-progress"]
    fresh = [*base, "--preset", args.preset, "--device", "cpu", "--output-dir", str(work),
             *[a for o in args.overrides for a in ("--set", o)]]

    t0 = time.perf_counter()
    subprocess.run([*fresh, "--run-name", "alone"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    alone_seconds = time.perf_counter() - t0
    reference = outcome(work / "alone")
    lines = (work / "alone" / "metrics.jsonl").read_text().count("\n")
    writes = 2 * lines + 2  # about one last.pt and at most one best.pt per epoch
    print(f"left alone: {reference['epochs_run']} epochs, {alone_seconds:.1f} s; "
          f"kills: {args.kills}", flush=True)

    kills: list[dict] = []
    trials: list[dict] = []
    trial, attempt = 0, 0
    while True:
        run_dir = work / f"trial{trial}"
        cmd = [*fresh, "--run-name", run_dir.name] if attempt == 0 else [
            *base, "--resume", str(run_dir)]
        kill_env, delay, mode = dict(env), None, "end"
        if len(kills) < args.kills:
            if rng.random() < args.write_share:
                mode = f"write {rng.randint(1, writes)}"
                kill_env["ADAREC_KILL_IN_WRITE"] = mode.split()[1]
            else:
                delay = rng.uniform(0, alone_seconds)
                mode = f"after {delay:.1f} s"
        proc = subprocess.Popen(cmd, env=kill_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        stderr = proc.stderr.read()
        proc.stderr.close()
        attempt += 1
        if proc.returncode == -signal.SIGKILL:
            torn = bool(list(run_dir.glob("*.tmp"))) if run_dir.is_dir() else False
            where = last_epoch(run_dir)
            kills.append({"trial": trial, "mode": mode, "last_pt": where, "torn_write": torn})
            print(f"kill {len(kills):2d} (trial {trial}): {mode}; last.pt at member/epoch "
                  f"{where}{'; a torn .tmp left' if torn else ''}", flush=True)
            if where == "none":  # killed before training began: nothing to resume from
                shutil.rmtree(run_dir, ignore_errors=True)
                attempt = 0
            continue
        if proc.returncode != 0:
            print(f"trial {trial} attempt {attempt} failed ({proc.returncode}):\n{stderr}")
            return 1
        same = outcome(run_dir) == reference
        trials.append({"trial": trial, "attempts": attempt, "identical": same})
        print(f"trial {trial}: finished after {attempt} processes, "
              f"{'identical' if same else 'DIFFERENT'}", flush=True)
        if len(kills) >= args.kills:
            break
        trial, attempt = trial + 1, 0

    good = {t["trial"] for t in trials if t["identical"]}
    identical = sum(k["trial"] in good for k in kills)
    print(f"{identical}/{len(kills)} identical ({len(trials)} trials, "
          f"{sum(k['torn_write'] for k in kills)} kills left a torn checkpoint write)")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "overrides": args.overrides,
                                         "alone_seconds": alone_seconds, "kills": kills,
                                         "trials": trials}, indent=2))
    return 0 if identical == len(kills) else 1


if __name__ == "__main__":
    sys.exit(main())

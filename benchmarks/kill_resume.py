"""Kill a training run at random moments, resume it each time, compare with the run left alone.

Usage (a script, not a test; CPU only, where runs repeat to the last digit):

    python benchmarks/kill_resume.py --preset default --kills 20 [--set KEY=VALUE ...] \
        [--write-share 0.25] [--chains 1] [--seed 0] [--workdir DIR] [--json FILE]

First the run is trained once, left alone (``adarec train``, one process). Then the same
run is started and SIGKILLed: after a random delay, uniform between the moment the lone
run wrote its first ``last.pt`` (its set-up done) and its end, or (a ``--write-share`` of
the kills) halfway through a random checkpoint write (``ADAREC_KILL_IN_WRITE``, see
`adarec.checkpoint`); then resumed with ``adarec train --resume``, killed again, and so on.
A trial ends when a resumed process finishes on its own, or when a kill lands after the
process wrote its results (while it exits); the next kill starts a new trial. A kill in a
checkpoint write picks one of the writes the process has left (one `last.pt` per epoch).
After its share of the kills, each chain's last trial is resumed to its end; ``--chains``
runs several such chains side by side. Each trial must end with the lone run's per-epoch
losses and validation metrics and its test results, exactly; a kill counts as identical
when its trial does. Prints one line per kill (where it landed) and ``N/N identical``;
exits 1 otherwise.

With ``--torchrun N`` the run trains under ``torchrun --nproc_per_node N --max-restarts
--kills`` on the CPU instead (docs/distributed.md#a-lost-worker): the reference is the same
job left alone; then each trial is one job in which one worker, a random rank, is SIGKILLed
at a random moment of the same window; torchrun restarts every process, they resume from
``last.pt``, and the job must end with the reference's logs and test results. Prints one
line per trial and ``N/N identical``.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from adarec.distributed import worker_pids

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


def completed_epochs(run_dir: Path) -> int:
    """Epochs ``run_dir/metrics.jsonl`` holds (0 before the run's first epoch)."""
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


def finished(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` wrote its final results (not an interruption's)."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return results.get("stop_reason") != "interrupted" and not (run_dir / "INCOMPLETE").exists()


class Chain:
    """One run killed and resumed again and again (trials one after the other)."""

    def __init__(self, name: str, kills: int, rng: random.Random, *, work: Path,
                 fresh: list[str], resume: list[str], env: dict[str, str],
                 window: tuple[float, float], writes: int, write_share: float,
                 reference: dict) -> None:
        self.name, self.quota, self.rng, self.work = name, kills, rng, work
        self.fresh, self.resume, self.env, self.window = fresh, resume, env, window
        self.writes, self.write_share, self.reference = writes, write_share, reference
        self.kills: list[dict] = []
        self.trials: list[dict] = []
        self.error: str | None = None

    def _next_kill(self, run_dir: Path) -> tuple[dict[str, str], float | None, str]:
        env = dict(self.env)
        if len(self.kills) >= self.quota:
            return env, None, "end"
        if self.rng.random() < self.write_share:
            # One of the writes this process will make: at least a last.pt for each epoch
            # left (a number past its last write would let it finish unkilled).
            n = self.rng.randint(1, max(1, self.writes - completed_epochs(run_dir)))
            env["ADAREC_KILL_IN_WRITE"] = str(n)
            return env, None, f"in write {n}"
        delay = self.rng.uniform(*self.window)
        return env, delay, f"after {delay:.1f} s"

    def run(self) -> None:
        trial, attempt = 0, 0
        while True:
            run_dir = self.work / f"{self.name}-trial{trial}"
            cmd = ([*self.fresh, "--run-name", run_dir.name] if attempt == 0
                   else [*self.resume, str(run_dir)])
            env, delay, mode = self._next_kill(run_dir)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            try:
                _, stderr = proc.communicate(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                _, stderr = proc.communicate()
            attempt += 1
            if proc.returncode == -signal.SIGKILL:
                torn = run_dir.is_dir() and bool(list(run_dir.glob("*.tmp")))
                where = last_epoch(run_dir)
                self.kills.append({"chain": self.name, "trial": trial, "mode": mode,
                                   "last_pt": where, "torn_write": torn})
                print(f"{self.name} kill {len(self.kills):2d} (trial {trial}): {mode}; "
                      f"last.pt at member/epoch {where}{'; torn .tmp left' if torn else ''}",
                      flush=True)
                if where == "none":  # killed before training began: nothing to resume
                    shutil.rmtree(run_dir, ignore_errors=True)
                    attempt = 0
                    continue
                if not finished(run_dir):
                    continue
                # The kill landed after the run had written its results (while the process
                # was exiting): the trial is over, with nothing to resume.
                self.kills[-1]["after_end"] = True
                print(f"{self.name} kill {len(self.kills):2d} landed after the run finished",
                      flush=True)
            elif proc.returncode != 0:
                self.error = f"{run_dir} attempt {attempt} failed ({proc.returncode}):\n{stderr}"
                print(self.error, flush=True)
                return
            same = outcome(run_dir) == self.reference
            self.trials.append({"chain": self.name, "trial": trial, "processes": attempt,
                                "identical": same})
            print(f"{self.name} trial {trial}: finished after {attempt} processes, "
                  f"{'identical' if same else 'DIFFERENT'}", flush=True)
            if len(self.kills) >= self.quota:
                return
            trial, attempt = trial + 1, 0


def run_alone(command: list[str], work: Path, env: dict[str, str]
              ) -> tuple[float | None, float | None]:
    """Run ``command --run-name alone`` to its end: (seconds to its first last.pt, which ends
    its set-up of imports, data and model, and where timed kills may begin; seconds in all),
    or (None, None) when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*command, "--run-name", "alone"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    setup = None
    while proc.poll() is None:
        if setup is None and (work / "alone" / "last.pt").is_file():
            setup = time.perf_counter() - t0
        time.sleep(0.05)
    if proc.returncode != 0:
        print(f"the run left alone failed ({proc.returncode})")
        return None, None
    return setup, time.perf_counter() - t0


def torchrun_trials(args: argparse.Namespace, work: Path, env: dict[str, str]) -> int:
    """``--torchrun N``: see the module docstring."""
    env = {**env, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(args.torchrun), "--max-restarts", str(max(args.kills, 1)),
               "-m", "adarec", "train", "--no-progress", "--preset", args.preset, "--device",
               "cpu", "--output-dir", str(work),
               *[a for o in args.overrides for a in ("--set", o)]]
    setup, alone = run_alone(command, work, env)
    if alone is None:
        return 1
    reference = outcome(work / "alone")
    print(f"left alone: {reference['epochs_run']} epochs on {args.torchrun} processes, "
          f"{alone:.1f} s ({setup or 0:.1f} s to its first last.pt)", flush=True)
    rng = random.Random(args.seed)
    trials = []
    for trial in range(args.kills):
        run_dir = work / f"trial{trial}"
        delay = rng.uniform(setup or 0.0, 0.9 * alone)  # a job may end sooner than alone
        job = subprocess.Popen([*command, "--run-name", run_dir.name], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start, killed = time.perf_counter(), None
        while killed is None and job.poll() is None:
            if time.perf_counter() - start >= delay:
                ranks = worker_pids(job.pid)
                if ranks:
                    rank = rng.choice(sorted(ranks))
                    os.kill(ranks[rank], signal.SIGKILL)
                    killed = (rank, last_epoch(run_dir))
            time.sleep(0.02)
        _, stderr = job.communicate(timeout=3600)
        same = job.returncode == 0 and outcome(run_dir) == reference
        where = ("not killed (the job ended first)" if killed is None else
                 f"rank {killed[0]} killed after {delay:.1f} s, last.pt at {killed[1]}")
        trials.append({"trial": trial, "delay_s": delay, "killed_rank": killed and killed[0],
                       "last_pt": killed and killed[1], "returncode": job.returncode,
                       "identical": same})
        print(f"trial {trial}: {where}; exit {job.returncode}, "
              f"{'identical' if same else 'DIFFERENT'}", flush=True)
        if job.returncode != 0:
            print(stderr[-2000:], flush=True)
    killed = [t for t in trials if t["killed_rank"] is not None]
    print(f"{sum(t['identical'] for t in killed)}/{len(killed)} killed jobs identical; "
          f"{len(trials) - len(killed)} ended before their kill time, "
          f"{sum(t['identical'] for t in trials if t not in killed)} of them identical",
          flush=True)
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "overrides": args.overrides,
                                         "processes": args.torchrun, "alone_seconds": alone,
                                         "setup_seconds": setup, "trials": trials}, indent=2))
    return 0 if killed and all(t["identical"] for t in trials) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--write-share", type=float, default=0.25,
                   help="share of the kills made halfway through a checkpoint write")
    p.add_argument("--chains", type=int, default=1,
                   help="runs killed side by side (the kills are shared out among them)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp folder)")
    p.add_argument("--json", type=Path, help="write every kill and trial here")
    p.add_argument("--torchrun", type=int, metavar="N",
                   help="train under torchrun with N CPU processes and kill one worker per "
                        "trial (torchrun --max-restarts restarts the job)")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("ADAREC_KILL_IN_WRITE", None)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kill_resume-"))
    if args.torchrun:
        return torchrun_trials(args, work, env)
    base = [sys.executable, "-m", "adarec", "train", "--no-progress"]
    fresh = [*base, "--preset", args.preset, "--device", "cpu", "--output-dir", str(work),
             *[a for o in args.overrides for a in ("--set", o)]]

    setup, alone = run_alone(fresh, work, env)
    if alone is None:
        return 1
    reference = outcome(work / "alone")
    lines = (work / "alone" / "metrics.jsonl").read_text().count("\n")
    writes = lines + 1  # at least one last.pt per epoch, and one before the first
    window = (setup or 0.0, alone)
    print(f"left alone: {reference['epochs_run']} epochs, {alone:.1f} s ({window[0]:.1f} s "
          f"to its first last.pt); kills: {args.kills} in {args.chains} chain(s)", flush=True)

    quotas = [args.kills // args.chains + (j < args.kills % args.chains)
              for j in range(args.chains)]
    chains = [Chain(f"c{j}", q, random.Random(args.seed * 1000 + j), work=work, fresh=fresh,
                    resume=[*base, "--resume"], env=env, window=window, writes=writes,
                    write_share=args.write_share, reference=reference)
              for j, q in enumerate(quotas)]
    with ThreadPoolExecutor(len(chains)) as pool:
        list(pool.map(Chain.run, chains))

    kills = [k for c in chains for k in c.kills]
    trials = [t for c in chains for t in c.trials]
    good = {(t["chain"], t["trial"]) for t in trials if t["identical"]}
    identical = sum((k["chain"], k["trial"]) in good for k in kills)
    print(f"{identical}/{len(kills)} identical ({len(trials)} trials, "
          f"{sum(k['mode'].startswith('in write') for k in kills)} kills in a checkpoint "
          f"write, {sum(k['torn_write'] for k in kills)} left a torn .tmp; "
          f"{sum(k['last_pt'] == 'none' for k in kills)} before the first last.pt, "
          f"{sum(k.get('after_end', False) for k in kills)} after the results were written)")
    if args.json:
        args.json.write_text(json.dumps({
            "preset": args.preset, "overrides": args.overrides, "alone_seconds": alone,
            "setup_seconds": setup, "kills": kills, "trials": trials,
            "errors": [c.error for c in chains if c.error]}, indent=2))
    failed = any(c.error for c in chains)
    return 0 if identical == len(kills) == args.kills and not failed else 1


if __name__ == "__main__":
    sys.exit(main())

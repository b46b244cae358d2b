"""The `adarec` console script, run as a user runs it (a subprocess), on tiny synthetic data.

One short training run is shared by the tests of this module (train, evaluate, run-directory
contents); a second run with the same seed checks that CPU runs repeat exactly. Most of a
command's time is importing torch, so independent commands run side by side, in batches
made by module fixtures; each test then checks one command's result.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from adarec.cli import app
from adarec.data.reader import read_sequences

TINY = ["--set", "data.synthetic_users=300", "--set", "data.synthetic_items=100"]


class Cli:
    """Runs the console script in a scratch directory with a clean environment."""

    def __init__(self, exe: Path, cwd: Path, env: dict[str, str]) -> None:
        self.exe, self.cwd, self.env = exe, cwd, env

    def _argv(self, args) -> list[str]:
        return [str(self.exe), *map(str, args)]

    def run(self, *args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(args), capture_output=True, text=True, cwd=self.cwd,
                              env={**self.env, **(env or {})}, timeout=600)

    def run_all(self, commands: dict[str, list]) -> dict[str, subprocess.CompletedProcess]:
        """Run independent commands side by side; outputs are small, so pipes never fill."""
        procs = {
            name: subprocess.Popen(self._argv(args), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=self.cwd, env=self.env)
            for name, args in commands.items()
        }
        done = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        return done


def _console_script() -> Path | None:
    beside = Path(sys.executable).parent / "adarec"
    if beside.is_file():
        return beside
    found = shutil.which("adarec")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    exe = _console_script()
    if exe is None:
        pytest.skip("the `adarec` console script is not installed (pip install -e .)")
    # No real cache, no network, no local data directory from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAREC_")}
    env["ADAREC_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    env["ADAREC_BASE_URL"] = "http://127.0.0.1:9/"  # the discard port: downloads fail fast
    return Cli(exe, tmp_path_factory.mktemp("cwd"), env)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _user_error(proc: subprocess.CompletedProcess, match: str) -> str:
    """Exit code 2, exactly one `error: ...` line on stderr, no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert match in lines[0], lines[0]
    return lines[0]


def _train_args(out: Path, name: str) -> list:
    return ["train", "--max-epochs", "1", "--output-dir", out, "--run-name", name,
            "--no-progress", "--device", "cpu", "--seed", "5", *TINY]


@pytest.fixture(scope="module")
def trained(cli: Cli, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("runs")
    proc = cli.run(*_train_args(out, "first"))
    _ok(proc)
    return proc, out / "first"


@pytest.fixture(scope="module")
def after_training(cli: Cli, trained, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Evaluations of the shared run and a second run with the same seed, side by side."""
    _, run_dir = trained
    return cli.run_all({
        "eval-dir": ["evaluate", run_dir, "--device", "cpu"],
        "eval-valid-zero": ["evaluate", run_dir / "best.pt", "--split", "valid",
                            "--history-mask", "zero"],
        "eval-test-zero": ["evaluate", run_dir, "--history-mask", "zero"],
        "eval-sparse": ["evaluate", run_dir, "--shorten-seq-to", "5"],
        "second-run": _train_args(run_dir.parent, "second"),
    })


# --- help -------------------------------------------------------------------------------


def _command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


COMMAND_PATHS = _command_paths(typer.main.get_command(app))


def _help_id(path: tuple[str, ...]) -> str:
    return " ".join(path) or "adarec"


@pytest.fixture(scope="module")
def helps(cli: Cli) -> dict[str, subprocess.CompletedProcess]:
    return cli.run_all({_help_id(p): [*p, "--help"] for p in COMMAND_PATHS})


def test_every_command_is_found():
    names = {" ".join(p) for p in COMMAND_PATHS}
    assert {"", "train", "evaluate", "presets", "data", "data list", "data stats",
            "data import", "data download"} <= names


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=_help_id)
def test_help(helps, path: tuple[str, ...]):
    assert "Usage" in _ok(helps[_help_id(path)])


# --- train and evaluate --------------------------------------------------------------------


def test_train_prints_the_metric_table(trained):
    proc, run_dir = trained
    out = proc.stdout
    assert f"run directory: {run_dir}" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "model", "popularity"]
    row = next(line for line in out.splitlines() if line.startswith("NDCG@20"))
    assert all(0.0 <= float(x) <= 1.0 for x in row.split()[1:])
    assert "results.json" in out


def test_run_directory_contents(trained):
    _, run_dir = trained
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "best.pt").is_file()
    assert not list(run_dir.glob("*.tmp"))
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    log = json.loads(lines[0])
    assert log["epoch"] == 1 and math.isfinite(log["losses"]["total"])
    results = json.loads((run_dir / "results.json").read_text())
    assert {"test", "valid", "best_epoch", "popularity_test"} <= set(results)
    assert results["best_epoch"] == 1
    for part in ("test", "valid", "popularity_test"):
        for name, value in results[part]["all"].items():
            assert math.isfinite(value) and (name == "users" or 0.0 <= value <= 1.0)
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_saved_config_reloads_to_the_run_config(trained):
    from adarec.config import config_from_dict, load_config

    _, run_dir = trained
    results = json.loads((run_dir / "results.json").read_text())
    config = load_config(config_file=run_dir / "config.yaml")
    assert config == config_from_dict(results["config"])
    assert config.data.synthetic_users == 300 and config.train.max_epochs == 1
    assert config.train.seed == 5 and config.runtime.device == "cpu"


def _metric_rows(out: str) -> dict[str, list[float]]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].startswith(("HR@", "NDCG@", "MRR")):
            rows[parts[0]] = [float(x) for x in parts[1:]]
    return rows


def test_evaluate_a_run_directory_reproduces_the_test_metrics(after_training, trained):
    _, run_dir = trained
    out = _ok(after_training["eval-dir"])
    assert "test split" in out and "history_mask=inf" in out
    results = json.loads((run_dir / "results.json").read_text())
    rows = _metric_rows(out)
    assert rows["NDCG@20"][0] == pytest.approx(results["test"]["all"]["NDCG@20"], abs=1e-4)
    assert rows["HR@10"][0] == pytest.approx(results["test"]["all"]["HR@10"], abs=1e-4)


def test_evaluate_a_checkpoint_on_valid_with_the_release_mask(after_training):
    out = _ok(after_training["eval-valid-zero"])
    assert "valid split" in out and "history_mask=zero" in out
    rows = _metric_rows(out)
    assert set(rows) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR"}
    assert all(0.0 <= v <= 1.0 for row in rows.values() for v in row)


def test_evaluate_with_the_release_mask_repeats_what_training_recorded(after_training,
                                                                       trained):
    # Not an inequality with the inf mask: a repeated answer is a miss under inf but can
    # rank well under zero (on this synthetic data MRR is higher under zero).
    _, run_dir = trained
    out = _ok(after_training["eval-test-zero"])
    recorded = json.loads((run_dir / "results.json").read_text())["test_by_history_mask"]
    for metric, row in _metric_rows(out).items():
        assert row[0] == pytest.approx(recorded["zero"]["all"][metric], abs=1e-4), metric


def test_evaluate_under_the_sparse_protocol(after_training):
    # Only the header shows the cut here: after one epoch on this synthetic data the ranks
    # of the answers do not change (tests/test_splits.py pins the cut itself).
    out = _ok(after_training["eval-sparse"])
    assert "shorten_seq_to=5" in out
    assert all(0.0 <= v <= 1.0 for v in _metric_rows(out)["HR@20"])


def test_same_seed_on_cpu_repeats_exactly(after_training, trained):
    _, first = trained
    _ok(after_training["second-run"])
    a = json.loads((first / "results.json").read_text())
    b = json.loads((first.parent / "second" / "results.json").read_text())
    assert a["test"] == b["test"]
    assert a["valid"] == b["valid"]
    assert a["popularity_test"] == b["popularity_test"]


# --- user errors: exit 2, one line on stderr, no traceback ------------------------------------

# name -> the text the error line must contain
ERRORS = {
    "malformed-data-file": "line 2",
    "missing-data-file": "file not found",
    "unknown-preset": "nope",
    "unknown-dataset": "NoSuchData",
    "bad-override": "nosuch",
    "non-finite-override": "train.lr must be a finite number",
    "old-config-bad-depths": "release.depths",
    "evaluate-missing-path": "no checkpoint",
    "evaluate-truncated-checkpoint": "best.pt",
    "evaluate-bad-split": "--split",
    "import-missing-column": "timestamp",
    "evaluate-shorten-zero": "--shorten-seq-to must be >= 1",
    "more-intents-than-rows": "k-means needs at least 5000",
}
GARBAGE = "evaluate-garbage-checkpoint"


@pytest.fixture(scope="module")
def errors(cli: Cli, trained, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    _, run_dir = trained
    tmp = tmp_path_factory.mktemp("errors")
    (tmp / "bad.txt").write_text("1 2 3 4 5\n1 a b\n")
    (tmp / "garbage").mkdir()
    (tmp / "garbage" / "best.pt").write_bytes(b"not a checkpoint at all")
    (tmp / "truncated").mkdir()
    data = (run_dir / "best.pt").read_bytes()
    (tmp / "truncated" / "best.pt").write_bytes(data[: len(data) // 2])
    (tmp / "log.csv").write_text("user,item\n1,2\n")
    (tmp / "old.yaml").write_text("train:\n  length_buckets: 2\nrelease:\n  depths: 4,x\n")
    out = ["--output-dir", tmp / "runs", "--no-progress"]
    commands = {
        "malformed-data-file": ["train", "--data-file", tmp / "bad.txt", *out],
        "missing-data-file": ["train", "--data-file", tmp / "none.txt", *out],
        "unknown-preset": ["train", "--preset", "nope", *out],
        "unknown-dataset": ["train", "--dataset", "NoSuchData", *out],
        "bad-override": ["train", "--set", "model.nosuch=1", *out],
        "non-finite-override": ["train", "--set", "train.lr=nan", *out],
        "old-config-bad-depths": ["train", "--config", tmp / "old.yaml", *out],
        "evaluate-missing-path": ["evaluate", tmp / "no-such-run"],
        "evaluate-truncated-checkpoint": ["evaluate", tmp / "truncated"],  # the run-dir form
        "evaluate-bad-split": ["evaluate", run_dir, "--split", "train"],
        "import-missing-column": ["data", "import", tmp / "log.csv", tmp / "out.txt"],
        "evaluate-shorten-zero": ["evaluate", run_dir, "--shorten-seq-to", "0"],
        "more-intents-than-rows": [
            "train", "--preset", "elcrec-beauty", "--dataset", "synthetic", "--set",
            "intents.n_intents=5000", "--set", "model.hidden_size=8", "--max-epochs", "1",
            "--device", "cpu", *TINY, *out],
        GARBAGE: ["evaluate", tmp / "garbage" / "best.pt"],
    }
    return cli.run_all(commands)


@pytest.mark.parametrize("name", ERRORS)
def test_user_error(errors, name: str):
    _user_error(errors[name], ERRORS[name])


def test_garbage_checkpoint_is_one_error_line(errors):
    _user_error(errors[GARBAGE], "best.pt")


# --- data and presets -----------------------------------------------------------------------


def test_data_list(cli: Cli):
    out = _ok(cli.run("data", "list"))
    for name in ("Beauty", "Sports_and_Outdoors", "Toys_and_Games", "Yelp", "synthetic"):
        assert name in out


def _stats(out: str) -> dict:
    return json.loads(out[out.index("{"):])


def test_data_stats_synthetic(cli: Cli):
    stats = _stats(_ok(cli.run("data", "stats", "synthetic")))
    assert stats["users"] == 2000 and stats["length_min"] >= 5


def test_data_stats_beauty(cli: Cli, beauty_file: Path):
    out = _ok(cli.run("data", "stats", "Beauty", env={"ADAREC_DATA_DIR": str(beauty_file.parent)}))
    stats = _stats(out)
    assert stats["users"] == 22363
    assert stats["interactions"] == 198502


def test_data_import_writes_a_readable_sequence_file(cli: Cli, tmp_path: Path):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\nu2,x,3\nu1,y,2\nu1,x,1\nu2,y,1\nu1,z,5\n")
    out_file = tmp_path / "seqs.txt"
    out = _ok(cli.run("data", "import", log, out_file, "--k-core", "0"))
    assert "wrote" in out
    seqs = read_sequences(out_file)
    # Users by original id (u1, u2); items by first appearance: u1 -> x, y, z; u2 -> y, x.
    assert seqs.to_lists() == [[1, 2, 3], [2, 1]]
    assert (tmp_path / "seqs.item_map.tsv").is_file()


def test_presets(cli: Cli):
    names = _ok(cli.run("presets")).split()
    assert "default" in names and "sasrec-beauty" in names


def test_recommend_top_k_for_a_history_file(cli: Cli, trained, tmp_path: Path):
    _, run_dir = trained
    histories = tmp_path / "histories.txt"
    histories.write_text("7 1 2 3\n9 4 5 6 7 8\n")
    out = tmp_path / "top.tsv"
    _ok(cli.run("recommend", run_dir, histories, "--k", "5", "--output", out))
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["7"] * 5 + ["9"] * 5
    assert [int(r[1]) for r in rows[:5]] == [1, 2, 3, 4, 5]
    for user, history in (("7", {1, 2, 3}), ("9", {4, 5, 6, 7, 8})):
        items = [int(r[2]) for r in rows if r[0] == user]
        assert len(set(items)) == 5 and not set(items) & history
    scores = [float(r[3]) for r in rows[:5]]
    assert scores == sorted(scores, reverse=True)


def test_recommend_refuses_unknown_items(cli: Cli, trained, tmp_path: Path):
    _, run_dir = trained
    histories = tmp_path / "histories.txt"
    histories.write_text("1 1 2 100000\n")
    _user_error(cli.run("recommend", run_dir, histories), "model knows items")


def test_train_time_limit_from_the_command_line(cli: Cli):
    done = cli.run("train", "--max-minutes", "1e-6", "--no-progress", "--set",
                   "data.synthetic_users=150", "--set", "model.hidden_size=16")
    assert done.returncode == 0, done.stderr
    assert "1 epochs run, stopped by time_limit" in done.stdout
    bad = cli.run("train", "--max-minutes", "0", "--no-progress")
    assert bad.returncode == 2 and bad.stderr.startswith("error: train.max_minutes")

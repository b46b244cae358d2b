"""Issue 17, point 7: every listed bad input gives one `error:` line and exit 2, or does the
right thing. The CLI runs in-process (see `inprocess_cli`), on one tiny run trained here."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest
from inprocess_cli import ok, run_cli, user_error, write_sequences_text

from adarec.data.reader import write_sequences
from adarec.data.synthetic import generate
from adarec.inputs import INCOMPLETE

SMALL = ["--max-epochs", "1", "--no-progress", "--device", "cpu", "--seed", "3",
         "--set", "model.hidden_size=8"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """No real cache, data directory or network for the module's commands."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("ADAREC_")]:
            mp.delenv(key)
        mp.setenv("ADAREC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("ADAREC_BASE_URL", "http://127.0.0.1:9/")
        yield tmp_path_factory.mktemp("bad")


@pytest.fixture(scope="module")
def trained(env: Path):
    """A run trained on ``data/seqs.txt`` given as a relative path from ``env``."""
    (env / "data").mkdir()
    write_sequences(generate(80, 60, seed=1), env / "data" / "seqs.txt")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(env)
        ok(run_cli("train", "--data-file", "data/seqs.txt", "--output-dir", "runs",
                   "--run-name", "r", *SMALL))
    return env / "runs" / "r"


@pytest.fixture()
def where(env: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _rows(n_users: int = 30, extra: list[int] | None = None) -> list[list[int]]:
    rows = [[u, *(1 + (u * 7 + j) % 20 for j in range(6))] for u in range(1, n_users + 1)]
    if extra:
        rows[0] += extra
    return rows


# --- data files ------------------------------------------------------------------------------


@pytest.mark.parametrize("big", [10**12, 5 * 10**7])
def test_huge_or_sparse_item_ids_are_refused(where: Path, big: int):
    path = write_sequences_text(where / "ids.txt", _rows(extra=[big]))
    line = user_error(run_cli("train", "--data-file", path, "--output-dir", "runs", *SMALL),
                      "renumber the items")
    assert f"{big:,}" in line
    assert not (where / "runs").exists()  # refused before any run folder


def test_gapped_ids_are_still_accepted(where: Path):
    # 20 distinct ids spread up to 134: wasteful but small; the rule only stops huge tables.
    rows = [[u, *(1 + ((u + j) % 20) * 7 for j in range(6))] for u in range(1, 31)]
    out = ok(run_cli("data", "stats", write_sequences_text(where / "gaps.txt", rows)))
    assert '"max_item_id": 134' in out and '"items": 20,' in out


def test_utf8_bom_is_read(where: Path):
    path = where / "bom.txt"
    path.write_bytes(codecs.BOM_UTF8 + b"1 2 3 4\n2 3 4 5\n")
    assert '"users": 2' in ok(run_cli("data", "stats", path))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files_name_the_encoding(where: Path, encoding: str):
    path = where / "wide.txt"
    text = "1 2 3 4\n2 3 4 5\n"
    path.write_bytes(text.encode(encoding) if encoding != "utf-16-be"
                     else codecs.BOM_UTF16_BE + text.encode(encoding))
    name = "UTF-32" if encoding == "utf-32" else "UTF-16"
    user_error(run_cli("train", "--data-file", path, *SMALL), f"the file is {name} text")


def test_utf16_without_bom_is_called_binary_or_utf16(where: Path):
    path = where / "wide.txt"
    path.write_bytes("1 2 3 4\n".encode("utf-16-le"))
    user_error(run_cli("data", "stats", path), "UTF-16 without a byte-order mark")


def test_dataset_and_data_file_together(where: Path):
    path = write_sequences_text(where / "s.txt", _rows())
    user_error(run_cli("train", "--dataset", "synthetic", "--data-file", path, *SMALL),
               "not both")


def test_binary_config_file(where: Path):
    path = where / "config.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    user_error(run_cli("train", "--config", path, *SMALL), "not UTF-8 text")
    user_error(run_cli("train", "--config", where, *SMALL), "is a folder")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_learning_rate(where: Path, value: str):
    outcome = run_cli("train", "--set", f"train.lr={value}", "--output-dir", "runs", *SMALL,
                      "--set", "data.synthetic_users=60")
    user_error(outcome, "train.lr must be a finite number")


# --- run folders ---------------------------------------------------------------------------


def test_output_dir_is_a_file(where: Path):
    (where / "afile").write_text("x")
    user_error(run_cli("train", "--output-dir", where / "afile", *SMALL,
                       "--set", "data.synthetic_users=60"), "is a file, not a folder")


def _unwritable(where: Path) -> Path:
    if os.geteuid() != 0:
        folder = where / "ro"
        folder.mkdir(mode=0o555)
        return folder
    # root writes through permission bits; /sys refuses new entries on most systems.
    probe = Path("/sys/adarec-probe")
    try:
        probe.mkdir()
    except OSError:
        return Path("/sys/adarec-test")
    probe.rmdir()
    pytest.skip("running as root with a writable /sys: no unwritable folder to try")


def test_output_dir_unwritable(where: Path):
    folder = _unwritable(where)
    user_error(run_cli("train", "--output-dir", folder, *SMALL,
                       "--set", "data.synthetic_users=60"), "cannot create the run directory")


@pytest.mark.parametrize("name", ["../../x", "..", "a/b", ".hidden", ""])
def test_run_name_cannot_escape_the_output_dir(where: Path, name: str):
    (where / "deep" / "er").mkdir(parents=True)
    user_error(run_cli("train", "--run-name", name, "--output-dir", where / "deep" / "er",
                       *SMALL), "--run-name must be a plain folder name")
    assert sorted(p.name for p in where.iterdir()) == ["deep"]
    assert not any((where / "deep" / "er").iterdir())


def test_a_finished_run_has_no_incomplete_marker(trained: Path):
    assert (trained / "results.json").is_file()
    assert not (trained / INCOMPLETE).exists()


def test_a_failed_run_is_marked_incomplete(where: Path):
    # 40 users cannot feed k-means with the release's 256 intent centres: the run fails
    # after its folder was made, and the folder says so.
    user_error(run_cli("train", "--preset", "release-beauty", "--dataset", "synthetic",
                       "--output-dir", "runs", "--run-name", "failed", *SMALL,
                       "--set", "data.synthetic_users=40", "--set", "data.synthetic_items=50"),
               "k-means needs at least 256")
    marker = where / "runs" / "failed" / INCOMPLETE
    assert marker.is_file() and "has not finished" in marker.read_text()
    assert not (where / "runs" / "failed" / "results.json").exists()


def test_evaluate_warns_about_an_incomplete_run(trained: Path, where: Path):
    copy = where / "copy"
    copy.mkdir()
    (copy / "best.pt").write_bytes((trained / "best.pt").read_bytes())
    (copy / INCOMPLETE).write_text("started")
    outcome = run_cli("evaluate", copy)
    ok(outcome)
    assert "did not finish" in outcome.stderr


# --- evaluate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "match"), [
    (["--history-mask", "none"], "--history-mask must be one of inf, zero"),
    (["--shorten-seq-to", "0"], "shorten"),  # also fixed on the struct branch: any clean error
    (["--shorten-seq-to", "-3"], "shorten"),
    (["--device", "tpu"], "--device must be"),
    (["--device", "gpu"], "--device must be"),
    (["--ties", "random"], "--ties must be one of"),
    (["--split", "train"], "--split"),
])
def test_evaluate_bad_options(trained: Path, args: list[str], match: str):
    user_error(run_cli("evaluate", trained, *args), match)


def test_evaluate_from_another_directory(trained: Path, where: Path):
    # The run was trained with the relative path data/seqs.txt; it stores the absolute one.
    assert str(trained.parent.parent / "data" / "seqs.txt") in (trained / "config.yaml").read_text()
    out = ok(run_cli("evaluate", trained))
    assert "test split, 80 users" in out


def test_evaluate_refuses_changed_data(trained: Path, where: Path):
    data = trained.parent.parent / "data" / "seqs.txt"
    original = data.read_bytes()
    try:
        lines = original.decode().splitlines()
        data.write_text("\n".join(lines[:-1]) + "\n")  # one user fewer
        user_error(run_cli("evaluate", trained), "has changed since the model was trained")
        # Fewer items: every item above 30 replaced.
        rows = [[int(t) for t in line.split()] for line in lines]
        rows = [[r[0], *(i if i <= 30 else 1 for i in r[1:])] for r in rows]
        write_sequences_text(data, rows)
        user_error(run_cli("evaluate", trained), "has changed")
    finally:
        data.write_bytes(original)
    ok(run_cli("evaluate", trained))


# --- recommend ---------------------------------------------------------------------------------


@pytest.fixture()
def histories(where: Path) -> Path:
    return write_sequences_text(where / "h.txt", [[7, 1, 2, 3], [9, 4, 5, 6, 7, 8]])


def test_recommend_bad_device(trained: Path, histories: Path):
    for device in ("tpu", "gpu"):
        user_error(run_cli("recommend", trained, histories, "--device", device), "--device")


def test_recommend_output_paths(trained: Path, histories: Path, where: Path):
    (where / "folder").mkdir()
    user_error(run_cli("recommend", trained, histories, "--output", where / "folder"),
               "is a folder")
    user_error(run_cli("recommend", trained, histories, "--output", where / "no" / "x.tsv"),
               "does not exist")
    before = histories.read_bytes()
    user_error(run_cli("recommend", trained, histories, "--output", histories),
               "is the input file")
    assert histories.read_bytes() == before
    user_error(run_cli("recommend", trained, histories, "--output", trained / "best.pt"),
               "is the input file")


def test_recommend_k_beyond_the_candidates_says_so(trained: Path, histories: Path, where: Path):
    out_file = where / "top.tsv"
    out = ok(run_cli("recommend", trained, histories, "--k", "500", "--output", out_file))
    rows = out_file.read_text().splitlines()[1:]
    n_items = json.loads((trained / "results.json").read_text())["data"]["n_items"]
    assert len(rows) == 2 * n_items - 3 - 5  # every item the user has not had, no more
    assert "top 500" not in out
    assert f"top {n_items}" in out and f"2 users had fewer than {n_items} items left" in out
    assert f"{len(rows)} rows in all" in out
    out = ok(run_cli("recommend", trained, histories, "--k", "3", "--output", out_file))
    assert out.strip().endswith("2 users x top 3")


# --- data import -------------------------------------------------------------------------------


@pytest.fixture()
def log(where: Path) -> Path:
    path = where / "log.csv"
    path.write_text("user,item,timestamp\n"
                    + "".join(f"u{u},i{i},{u * 10 + i}\n" for u in range(4) for i in range(4)))
    return path


def test_import_output_is_a_folder(log: Path, where: Path):
    (where / "out").mkdir()
    user_error(run_cli("data", "import", log, where / "out", "--k-core", "0"), "is a folder")


def test_import_output_is_the_input(log: Path, where: Path):
    before = log.read_bytes()
    user_error(run_cli("data", "import", log, log, "--k-core", "0"), "is the input log")
    # The id maps beside the output must not overwrite the log either.
    renamed = where / "x.item_map.tsv"
    log.rename(renamed)
    user_error(run_cli("data", "import", renamed, where / "x.txt", "--k-core", "0",
                       "--sep", ","), "is the input log")
    assert renamed.read_bytes() == before


def test_import_same_column_twice(log: Path, where: Path):
    user_error(run_cli("data", "import", log, where / "o.txt", "--user-col", "user",
                       "--item-col", "user", "--k-core", "0"), "three different columns")


def test_import_input_is_a_folder(where: Path):
    (where / "logs").mkdir()
    user_error(run_cli("data", "import", where / "logs", where / "o.txt"), "is a folder")


# --- command-line syntax ---------------------------------------------------------------------


@pytest.mark.parametrize(("args", "match"), [
    (["recommend", "run", "h.txt", "--k", "abc"], "Invalid value for '--k'"),
    (["train", "--nosuch"], "No such option: --nosuch"),
    (["evaluate"], "Missing argument"),
    (["nosuchcommand"], "No such command"),
])
def test_usage_errors_are_one_line(where: Path, args: list[str], match: str):
    user_error(run_cli(*args), match)


@pytest.mark.parametrize(("args", "match"), [
    (["--seed", "10000000000000000000000"], "train.seed must be in 0..2**63-1"),
    (["--shorten-seq-to", "10000000000000000000000"], "too large"),
])
def test_numbers_too_large_for_the_machine(where: Path, args: list[str], match: str):
    user_error(run_cli("train", "--output-dir", "runs", *SMALL, "--set",
                       "data.synthetic_users=60", *args), match)


def test_evaluate_shorten_beyond_the_model(trained: Path):
    user_error(run_cli("evaluate", trained, "--shorten-seq-to", "10000000000000000000000"),
               "max_len")


# --- output paths and names that match nothing (issue 45, point 2) -----------------------------


def test_export_output_is_a_folder(trained: Path, where: Path):
    (where / "out").mkdir()
    user_error(run_cli("export", trained, "--format", "onnx", "--output", "out"), "is a folder")


def test_report_output_is_a_file(trained: Path, where: Path):
    (where / "report.md").write_text("kept\n")
    user_error(run_cli("report", trained, "--output", "report.md", "--no-replay"), "is a file")
    assert (where / "report.md").read_text() == "kept\n"


def test_report_baseline_that_matches_no_run(trained: Path, where: Path):
    user_error(run_cli("report", trained, "--output", "rep", "--baseline", "nosuch-preset",
                       "--no-replay"), "--baseline nosuch-preset matches no run")
    assert not (where / "rep").exists()

"""`adarec reproduce`: result files, resumption, and the table beside the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from adarec.cli import app
from adarec.errors import AdarecError
from adarec.paper import paper_row
from adarec.reproduce import paper_gap_rows, table_rows

TINY = ["data.dataset=synthetic", "data.synthetic_users=150", "data.synthetic_items=60",
        "model.hidden_size=16", "train.max_epochs=2", "train.batch_size=64"]


def _invoke(tmp_path: Path, *extra: str):
    args = ["reproduce", "--preset", "default", "--seed", "1", "--seed", "2",
            "--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
            "--no-progress", *(a for s in TINY for a in ("--set", s)), *extra]
    return CliRunner().invoke(app, args)


def test_reproduce_writes_results_logs_and_table_then_resumes(tmp_path):
    first = _invoke(tmp_path)
    assert first.exit_code == 0, first.output
    folder = tmp_path / "results" / "synthetic"
    for seed in (1, 2):
        r = json.loads((folder / f"default-seed{seed}.json").read_text())
        assert r["config"]["train"]["seed"] == seed and r["name"] == f"default-seed{seed}"
        assert set(r["test_by_history_mask"]) == {"inf", "zero"}
        assert r["test"] == r["test_by_history_mask"]["inf"]
        assert {"len<=5", "all"} <= set(r["test"])
        log = (folder / f"default-seed{seed}.metrics.jsonl").read_text().splitlines()
        assert len(log) == r["epochs_run"] == 2
    table = (folder / "README.md").read_text()
    assert "| default-seed1 | full, mask inf |" in table and "| default-seed2 |" in table
    before = (folder / "default-seed1.json").read_text()
    again = _invoke(tmp_path)
    assert again.exit_code == 0 and again.output.count("skipped") == 2
    assert (folder / "default-seed1.json").read_text() == before


def test_tag_names_the_runs(tmp_path):
    result = _invoke(tmp_path, "--tag", "short5", "--shorten-seq-to", "5")
    assert result.exit_code == 0, result.output
    r = json.loads((tmp_path / "results/synthetic/default-short5-seed1.json").read_text())
    assert r["config"]["data"]["shorten_seq_to"] == 5


def test_a_sparse_run_without_a_tag_gets_its_own_name_and_never_takes_a_full_runs_results(
        tmp_path):
    sparse = _invoke(tmp_path, "--shorten-seq-to", "5")
    assert sparse.exit_code == 0, sparse.output
    folder = tmp_path / "results/synthetic"
    assert json.loads((folder / "default-short5-seed1.json").read_text())["name"] == \
        "default-short5-seed1"
    assert not (folder / "default-seed1.json").exists()
    # A results file of another protocol under the asked name is refused, not taken.
    (folder / "default-seed1.json").write_text((folder / "default-short5-seed1.json").read_text())
    full = _invoke(tmp_path)  # in-process, the error reaches `adarec.cli.main` (exit 2)
    assert isinstance(full.exception, AdarecError)
    assert "data.shorten_seq_to=5, not None" in str(full.exception)
    assert "--tag" in str(full.exception)


def test_paper_rows_follow_model_and_protocol():
    assert paper_row("Beauty", "adarec", None) == ("Table 1: ADARec", (.0600, .0403, .1187, .0568))
    assert paper_row("Beauty", "release", None)[0] == "Table 1: ADARec"
    assert paper_row("Yelp", "elcrec", 5) == ("Table 2: ELCRec", (.0188, .0108, .0514, .0178))
    assert paper_row("Yelp", "sasrec", 5) is None  # Table 2 has no SASRec row
    assert paper_row("Beauty", "adarec", 3) is None
    assert paper_row("synthetic", "adarec", None) is None


def test_table_gap_is_relative_to_the_paper_row():
    metrics = {"HR@5": 0.0660, "NDCG@5": 0.0403, "HR@20": 0.1187, "NDCG@20": 0.0284}
    result = {
        "name": "adarec-beauty-seed1", "best_epoch": 3, "epochs_run": 9, "stop_reason": "patience",
        "median_train_seconds": 1.5, "median_valid_seconds": 0.1, "device": "x",
        "test": {"all": metrics},
        "config": {"preset": "adarec-beauty", "data": {"dataset": "Beauty", "shorten_seq_to": None},
                   "model": {"name": "adarec"}, "train": {"history_mask": "inf"}},
    }
    row = table_rows([result])[2]
    assert "| Table 1: ADARec | +10.0% | +0.0% | +0.0% | -50.0% | 3 / 9 | patience |" in row


def test_every_run_is_set_against_every_paper_row_of_its_protocol():
    metrics = {"HR@5": 0.0374, "NDCG@5": 0.0241, "HR@20": 0.0901, "NDCG@20": 0.0568}
    result = {"name": "sasrec-beauty-seed1", "test": {"all": metrics},
              "config": {"preset": "sasrec-beauty", "data": {"dataset": "Beauty",
                                                              "shorten_seq_to": None}}}
    rows = paper_gap_rows([result])[2:]
    assert [row.split(" | ")[1] for row in rows] == [
        "Table 1: ADARec", "Table 1: ELCRec", "Table 1: SASRec"]
    assert rows[0].endswith("| -37.7% | -40.2% | -24.1% | +0.0% |")  # ADARec .0600 .0403 ...
    assert rows[2].endswith("| +0.0% | +0.0% | +0.0% | +46.8% |")  # SASRec ... .0387
    sparse = {**result, "config": {**result["config"], "data": {"dataset": "Beauty",
                                                                 "shorten_seq_to": 5}}}
    assert [row.split(" | ")[1] for row in paper_gap_rows([sparse])[2:]] == [
        "Table 2: ADARec", "Table 2: ELCRec"]  # Table 2 has no SASRec row
    assert paper_gap_rows([{**result, "config": {**result["config"], "data": {
        "dataset": "synthetic", "shorten_seq_to": None}}}]) == []


def test_table_has_mean_over_seeds_when_a_run_has_several(tmp_path):
    result = _invoke(tmp_path)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "results/synthetic/README.md").read_text()
    runs = [json.loads((tmp_path / f"results/synthetic/default-seed{k}.json").read_text())
            for k in (1, 2)]
    mean = sum(r["test"]["all"]["NDCG@20"] for r in runs) / 2
    assert "## Mean over seeds" in table
    row = next(line for line in table.splitlines() if line.startswith("| default | 1, 2 |"))
    assert f"{mean:.4f} ± " in row

"""`adarec report` over small synthetic runs (2 presets x 2 seeds), and the outcomes files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from inprocess_cli import run_cli, user_error
from scipy import stats
from typer.testing import CliRunner

from adarec.cli import app
from adarec.errors import AdarecError
from adarec.outcomes import Outcomes, load_outcomes, save_outcomes

pytest.importorskip("matplotlib")

TINY = ["data.dataset=synthetic", "data.synthetic_users=100", "data.synthetic_items=50",
        "model.hidden_size=8", "model.num_layers=1", "train.max_epochs=2", "data.max_len=20",
        "train.batch_size=64", "adarec.max_depth=2", "intents.n_intents=4"]
PRESETS = ("sasrec-beauty", "adarec-beauty")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """results/synthetic/ of `adarec reproduce` for both presets and seeds 1, 2."""
    root = tmp_path_factory.mktemp("report")
    args = ["reproduce", *(a for p in PRESETS for a in ("--preset", p)), "--seed", "1",
            "--seed", "2", "--results-dir", str(root / "results"), "--runs-dir",
            str(root / "runs"), "--no-progress", *(a for s in TINY for a in ("--set", s))]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    return root / "results" / "synthetic"


def _report(*args: str):
    return CliRunner().invoke(app, ["report", *args])


def test_reproduce_stores_outcomes_beside_the_json(results):
    for preset in PRESETS:
        for seed in (1, 2):
            r = json.loads((results / f"{preset}-seed{seed}.json").read_text())
            o = load_outcomes(results / f"{preset}-seed{seed}.outcomes.npz")
            assert len(o) == r["test"]["all"]["users"] and set(o.ranks) == {"inf", "zero"}
            ndcg = np.where(o.ranks["inf"] <= 20, 1 / np.log2(o.ranks["inf"] + 1.0), 0).mean()
            assert ndcg == pytest.approx(r["test_by_history_mask"]["inf"]["all"]["NDCG@20"])
            assert np.array_equal(np.sort(o.user), np.unique(o.user))
            collapse = r["analysis"]["collapse"]
            assert 1.0 <= collapse["effective_rank"] <= collapse["dim"]
    adarec = load_outcomes(results / "adarec-beauty-seed1.outcomes.npz")
    assert adarec.extra["depth"].max() <= 2 and adarec.extra["router"].shape[1] == 3


def test_report_table_tests_and_figures(results, tmp_path):
    out = _report(str(results), "--output", str(tmp_path / "rep"), "--baseline",
                  "sasrec-beauty", "--bootstrap", "200")
    assert out.exit_code == 0, out.output
    text = (tmp_path / "rep" / "report.md").read_text()
    # Mean ± std over the two seeds, from the JSONs.
    values = [json.loads((results / f"adarec-beauty-seed{s}.json").read_text())
              ["test"]["all"]["NDCG@20"] for s in (1, 2)]
    cell = f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    row = next(line for line in text.splitlines() if line.startswith("| adarec-beauty | full"))
    assert "| 2 (1, 2) |" in row and cell in row
    # The overall NDCG@20 p-value, recomputed here from the outcomes files.
    def per_user(preset):
        os_ = [load_outcomes(results / f"{preset}-seed{s}.outcomes.npz") for s in (1, 2)]
        ranks = [o.ranks["inf"][np.argsort(o.user)] for o in os_]
        return np.mean([np.where(r <= 20, 1 / np.log2(r + 1.0), 0) for r in ranks], axis=0)
    diff = per_user("adarec-beauty") - per_user("sasrec-beauty")
    test_row = next(line for line in text.splitlines()
                    if line.startswith("| adarec-beauty | NDCG@20 | all |"))
    cells = [c.strip() for c in test_row.strip("|").split("|")]
    if np.count_nonzero(diff):
        p = stats.wilcoxon(diff).pvalue
        shown = float(cells[6])
        assert shown == pytest.approx(p, rel=5e-3, abs=5e-4)
        assert cells[7] == cells[6]  # one model against the baseline: Holm changes nothing
    assert re.match(r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]", cells[5])
    assert f"{diff.mean():+.4f}" in cells[5] and cells[3] == str(len(diff))
    for bucket in ("len<=5", "len<=10", "len>10"):
        assert f"| adarec-beauty | NDCG@20 | {bucket} |" in text
    for name in ("synthetic-curves.png", "synthetic-buckets.png",
                 "synthetic-adarec-beauty-depth.png", "synthetic-adarec-beauty-router.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
    assert "| sasrec-beauty | 2 |" in text  # collapse table, both seeds measured


def test_runs_without_outcomes_are_listed_without_tests(results, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for f in results.glob("*"):
        if not (f.name.startswith("adarec") and f.name.endswith(".npz")):
            shutil.copy(f, old / f.name)
    out = _report(str(old), "--output", str(tmp_path / "rep"), "--bootstrap", "200")
    assert out.exit_code == 0, out.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Listed without tests" in text and "`adarec-beauty`" in text
    assert "| adarec-beauty | NDCG@20 |" not in text


def test_bad_paths_are_one_error_line(tmp_path):
    missing = tmp_path / "missing"
    user_error(run_cli("report", missing, "--output", tmp_path / "rep"), str(missing))
    (tmp_path / "empty").mkdir()
    user_error(run_cli("report", tmp_path / "empty", "--output", tmp_path / "rep"),
               "no run results")
    assert not (tmp_path / "rep").exists()  # nothing written on the way out


def test_outcomes_round_trip_and_damaged_file(tmp_path):
    o = Outcomes(np.array([3, 1]), np.array([4, 9], np.int32),
                 {"inf": np.array([1, 7], np.int32)}, {"depth": np.array([0, 2], np.int16)})
    save_outcomes(o, tmp_path / "o.npz")
    back = load_outcomes(tmp_path / "o.npz")
    assert back.user.tolist() == [3, 1] and back.ranks["inf"].tolist() == [1, 7]
    assert back.extra["depth"].tolist() == [0, 2]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(AdarecError, match="not a readable outcomes file"):
        load_outcomes(tmp_path / "bad.npz")


def test_run_dirs_without_outcomes_are_replayed_from_best_pt(results, tmp_path):
    from adarec.report.replay import needs_replay, replay
    from adarec.report.runs import find_runs

    runs_dir = results.parent.parent / "runs"
    old = tmp_path / "old-runs"
    for name in ("sasrec-beauty-seed1", "adarec-beauty-seed1"):
        shutil.copytree(runs_dir / name, old / name)
        (old / name / "outcomes.npz").unlink()
        r = json.loads((old / name / "results.json").read_text())
        del r["analysis"]
        (old / name / "results.json").write_text(json.dumps(r))
    run = next(r for r in find_runs([old]) if r.name == "adarec-beauty-seed1")
    assert needs_replay(run) and run.outcomes is None
    replay(run, device="cpu")
    stored = load_outcomes(runs_dir / "adarec-beauty-seed1" / "outcomes.npz")
    for mask in ("inf", "zero"):
        assert np.array_equal(run.outcomes.ranks[mask], stored.ranks[mask])
    assert np.array_equal(run.outcomes.extra["depth"], stored.extra["depth"])
    written = json.loads((runs_dir / "adarec-beauty-seed1" / "results.json").read_text())
    assert run.results["analysis"]["collapse"] == pytest.approx(written["analysis"]["collapse"])
    out = _report(str(old), "--output", str(tmp_path / "rep"), "--bootstrap", "200")
    assert out.exit_code == 0, out.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Final pass recomputed from the checkpoint" in text
    assert "| adarec-beauty | NDCG@20 | all |" in text
    assert not (old / "adarec-beauty-seed1" / "outcomes.npz").exists()  # nothing written

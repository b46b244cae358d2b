"""`adarec sweep`: a 3-trial Optuna study on synthetic data, resumed, and its best config."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from adarec.cli import app
from adarec.config import load_config
from adarec.errors import AdarecError

optuna = pytest.importorskip("optuna")

TINY = ["data.synthetic_users=100", "data.synthetic_items=50", "model.hidden_size=8",
        "data.max_len=20", "model.num_layers=1", "train.max_epochs=3", "train.batch_size=64"]
SPACE = """
train.lr: {low: 0.0005, high: 0.01, log: true}
model.hidden_dropout: [0.1, 0.3]
"""


def _sweep(tmp_path: Path, *extra: str, space: str = SPACE):
    (tmp_path / "space.yaml").write_text(space)
    args = ["sweep", "--preset", "default", "--space", str(tmp_path / "space.yaml"),
            "--trials", "3", "--storage", f"sqlite:///{tmp_path / 'sweep.db'}", "--study", "s",
            "--output", str(tmp_path / "best.yaml"), "--runs-dir", str(tmp_path / "runs"),
            "--sampler-seed", "0", *(a for s in TINY for a in ("--set", s)), *extra]
    return CliRunner().invoke(app, args)


def test_three_trials_best_config_and_resume(tmp_path):
    out = _sweep(tmp_path)
    assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'sweep.db'}")
    trials = study.get_trials()
    assert len(trials) == 3 and out.output.count("trial ") >= 3
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: t.value)
    # The value is the trial's best validation NDCG@20, as its per-epoch reports show.
    assert best.value == pytest.approx(max(best.intermediate_values.values()))
    cfg = load_config(config_file=tmp_path / "best.yaml")
    assert cfg.preset == "default" and cfg.train.lr == pytest.approx(best.params["train.lr"])
    assert cfg.model.hidden_dropout == best.params["model.hidden_dropout"]
    assert cfg.data.synthetic_users == 100
    again = _sweep(tmp_path)  # the study is full: no new trial, the same best
    assert again.exit_code == 0, again.output
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'sweep.db'}")
               .get_trials()) == 3


@pytest.mark.parametrize("space, message", [
    ("train.nosuch: [1, 2]\n", "nosuch"),
    ("lr: [1, 2]\n", "section.key"),
    ("train.lr: {low: 2, high: 1}\n", "low <= high"),
    ("- 1\n", "mapping"),
])
def test_bad_spaces_are_errors(tmp_path, space, message):
    out = _sweep(tmp_path, space=space)
    assert isinstance(out.exception, AdarecError) and message in str(out.exception)
    assert not (tmp_path / "best.yaml").exists()

"""A one-epoch run of the `sasrec-beauty` preset on a slice of the real Beauty file.

Real data catches what synthetic data hides (sparse item ids, long tails, many short users);
the first 2,000 users keep it to seconds on two CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adarec.data.reader import read_sequences, write_sequences
from adarec.data.sequences import Sequences

N_USERS = 2000


@pytest.mark.slow
def test_sasrec_beauty_one_epoch_on_a_subset(beauty_file: Path, tmp_path: Path):
    exe = Path(sys.executable).parent / "adarec"
    if not exe.is_file():
        pytest.skip("the `adarec` console script is not installed (pip install -e .)")
    seqs = read_sequences(beauty_file)
    assert len(seqs) == 22363
    subset = Sequences.from_lists(seqs.to_lists()[:N_USERS])
    data_file = tmp_path / "beauty-2000.txt"
    write_sequences(subset, data_file)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAREC_")}
    env["ADAREC_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [str(exe), "train", "--data-file", str(data_file), "--preset", "sasrec-beauty",
         "--max-epochs", "1", "--no-progress", "--device", "cpu", "--output-dir",
         str(tmp_path / "runs"), "--run-name", "smoke"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "runs" / "smoke" / "results.json").read_text())
    assert results["data"]["n_users"] == N_USERS
    assert results["data"]["n_items"] == subset.n_items
    assert results["epochs_run"] == 1
    test = results["test"]["all"]
    assert test["users"] == N_USERS  # every Beauty user has >= 5 items
    for name, value in test.items():
        if name != "users":
            assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0
    assert test["HR@20"] >= test["HR@10"] >= test["HR@5"]

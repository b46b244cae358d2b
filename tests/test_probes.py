"""The probe scripts in benchmarks/ (docs/method.md#what-the-mechanism-does-in-training): the
formula they compare the denoiser with, and that they run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def probe_levels():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import probe_levels

        yield probe_levels
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_linear_denoiser_bound_matches_the_isotropic_closed_form(probe_levels):
    # E0 ~ N(0, s^2 I): the best linear estimate of eps from a E0 + b eps is
    # b / (a^2 s^2 + b^2) times the input, with error a^2 s^2 / (a^2 s^2 + b^2).
    gen = torch.Generator().manual_seed(0)
    e0 = torch.randn(200_000, 4, generator=gen) * 2.0
    a, b = 0.8, 0.6
    expected = a * a * 4.0 / (a * a * 4.0 + b * b)
    assert probe_levels.linear_error(e0, a, b) == pytest.approx(expected, abs=2e-3)
    # A coordinate that is always zero is noise alone: its noise is read off exactly.
    e0[:, 0] = 0.0
    mixed = (3 * expected + 0.0) / 4
    assert probe_levels.linear_error(e0, a, b) == pytest.approx(mixed, abs=2e-3)


def test_probe_levels_runs_on_the_synthetic_data():
    out = subprocess.run(
        [sys.executable, "probe_levels.py", "--preset", "adarec-beauty-h64", "--dataset",
         "synthetic", "--device", "cpu", "--batches", "1", "--set", "adarec.max_depth=3"],
        cwd=BENCHMARKS, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    deno = next(line for line in lines if line.startswith("deno"))
    assert len(deno.split()) == 1 + 3
    assert any("with gate = 0.5" in line for line in lines)
    table = lines[lines.index(next(x for x in lines if x.startswith("bucket"))) + 1 :]
    assert table[0].split()[0] == "all" and int(table[0].split()[1]) > 0


def test_the_depth_table_reads_user_dependence_off_the_softmax(probe_levels, capsys):
    # Two users with opposite certain choices: the depth is fully the user's, MI = ln 2;
    # two users with the same distribution: MI = 0, whatever that distribution is.
    lengths = torch.tensor([2, 2])
    probe_levels.print_depths(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), lengths)
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("all"))
    users, mean, std, top, share, mi, ent = row.split()[1:]
    assert (int(users), float(mean), float(share)) == (2, 0.5, 0.5)
    assert float(mi) == pytest.approx(0.6931, abs=1e-4) and float(ent) == 0.0
    probe_levels.print_depths(torch.tensor([[0.25, 0.75], [0.25, 0.75]]), lengths)
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("len<=3"))
    users, mean, std, top, share, mi, ent = row.split()[1:]
    assert (float(mean), float(std), int(top), float(share)) == (0.75, 0.0, 1, 1.0)
    assert float(mi) == pytest.approx(0.0, abs=1e-6)
    assert float(ent) == pytest.approx(0.562, abs=1e-3)


def test_probe_router_runs_on_the_synthetic_data():
    out = subprocess.run(
        [sys.executable, "probe_router.py", "--preset", "adarec-beauty-h64", "--dataset",
         "synthetic", "--device", "cpu", "--batches", "2", "--steps", "1", "--set",
         "adarec.max_depth=3"],
        cwd=BENCHMARKS, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [r[:2] for r in rows] == [["adaptive", "init"], ["fixed", "3"],
                                     ["adaptive", "after"], ["fixed", "3"]]
    # Same weights at the start: the same output layer; the fixed model's gradient differs.
    assert rows[0][2] == rows[1][3] and rows[0][3] != rows[1][4]


def test_probe_router_refuses_a_fixed_depth_preset():
    out = subprocess.run(
        [sys.executable, "probe_router.py", "--preset", "adarec-beauty-h64", "--dataset",
         "synthetic", "--device", "cpu", "--set", "adarec.controller=fixed"],
        cwd=BENCHMARKS, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2 and "fixed-depth twin" in out.stderr

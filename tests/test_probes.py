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

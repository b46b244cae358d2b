"""The final pass of runs made before outcomes were stored, from their checkpoints.

A run directory that holds ``best.pt`` but no ``outcomes.npz`` (or no ``analysis`` in its
``results.json``) gets both computed here, in memory, exactly as `adarec.train.fit` does
at the end of a run: the test ranks under both history masks and `adarec.probe.final_pass`.
Nothing is written into the run directory.
"""

from __future__ import annotations

from pathlib import Path

from adarec.checkpoint import load_checkpoint, model_from_checkpoint
from adarec.evaluate import rank_masks
from adarec.outcomes import outcomes_of
from adarec.probe import final_pass
from adarec.report.runs import Run
from adarec.setup import eval_batch_size, evaluation_split, resolve_device


def needs_replay(run: Run) -> bool:
    return run.checkpoint is not None and (run.outcomes is None
                                           or "analysis" not in run.results)


def replay(run: Run, *, data_dir: Path | None = None, device: str = "auto") -> None:
    """Fill ``run.outcomes`` and ``run.results["analysis"]`` from its checkpoint."""
    assert run.checkpoint is not None
    model, cfg, info = model_from_checkpoint(load_checkpoint(run.checkpoint))
    dev = resolve_device(device)
    model.to(dev).eval()
    test = evaluation_split(cfg, info, "test",
                            data_dir=str(data_dir) if data_dir else None).to(dev)
    batch = eval_batch_size(cfg.runtime, dev, info.n_items)
    ranks = rank_masks(model.score, test, info.n_items, batch_size=batch)
    probe = final_pass(model, test, batch_size=batch, seed=cfg.train.seed)
    run.outcomes = outcomes_of(test, ranks, probe.per_user)
    run.results["analysis"] = probe.summary

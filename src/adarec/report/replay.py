"""The final pass of runs made before outcomes were stored, from their checkpoints.

A run directory that holds ``best.pt`` but no ``outcomes.npz`` (or no ``analysis`` in its
``results.json``) gets both computed here, in memory, exactly as `adarec.train.fit` does
at the end of a run: the test ranks under both history masks and `adarec.probe.final_pass`.
Nothing is written into the run directory.
"""

from __future__ import annotations

from pathlib import Path

from adarec.checkpoint import load_checkpoint, model_from_checkpoint
from adarec.data.load import make_splits
from adarec.errors import AdarecError
from adarec.evaluate import rank_masks
from adarec.outcomes import outcomes_of
from adarec.probe import final_pass
from adarec.report.runs import Run
from adarec.train import configured_sequences, eval_batch_size, resolve_device


def needs_replay(run: Run) -> bool:
    return run.checkpoint is not None and (run.outcomes is None
                                           or "analysis" not in run.results)


def replay(run: Run, *, data_dir: Path | None = None, device: str = "auto") -> None:
    """Fill ``run.outcomes`` and ``run.results["analysis"]`` from its checkpoint."""
    assert run.checkpoint is not None
    model, cfg, info = model_from_checkpoint(load_checkpoint(run.checkpoint))
    seqs = configured_sequences(cfg.data, str(data_dir) if data_dir else None)
    if seqs.n_items != info.n_items:
        raise AdarecError(f"{run.checkpoint}: {seqs.source} has {seqs.n_items} items, the "
                          f"model {info.n_items}: not the data it was trained on")
    splits, _ = make_splits(seqs, max_len=cfg.data.max_len,
                            shorten_seq_to=cfg.data.shorten_seq_to)
    dev = resolve_device(device)
    model.to(dev).eval()
    test = splits.test.to(dev)
    batch = eval_batch_size(cfg.train, dev)
    ranks = rank_masks(model.score, test, info.n_items, batch_size=batch)
    probe = final_pass(model, test, batch_size=batch, seed=cfg.train.seed)
    run.outcomes = outcomes_of(test, ranks, probe.per_user)
    run.results["analysis"] = probe.summary

"""Turn a `DataConfig`-like description into `Sequences` and leave-one-out `Splits`."""

from __future__ import annotations

from dataclasses import dataclass

from adarec.data import registry, synthetic
from adarec.data.checks import check_dense_ids, fingerprint
from adarec.data.reader import read_sequences
from adarec.data.sequences import Sequences
from adarec.data.splits import Splits, build_splits
from adarec.errors import AdarecError


@dataclass(frozen=True)
class DataInfo:
    """Facts learned from the data (never written back into the configuration)."""

    n_users: int
    n_items: int
    n_interactions: int
    max_len: int
    source: str
    fingerprint: str = ""  # `adarec.data.checks.fingerprint` of the sequences ("" in old runs)


def load_sequences(
    dataset: str,
    *,
    data_file: str | None = None,
    data_dir: str | None = None,
    synthetic_users: int = 2000,
    synthetic_items: int = 500,
    synthetic_seed: int = 0,
) -> Sequences:
    """``synthetic``, ``file`` (reads ``data_file``) or a registered benchmark name."""
    if dataset == "synthetic":
        return synthetic.generate(synthetic_users, synthetic_items, seed=synthetic_seed)
    if dataset == "file":
        if not data_file:
            raise AdarecError("dataset 'file' needs a data file (--data-file PATH)")
        seqs = read_sequences(data_file)
        check_dense_ids(seqs)
        return seqs
    return registry.load_dataset(dataset, data_dir=data_dir)


def make_splits(
    seqs: Sequences, *, max_len: int, shorten_seq_to: int | None
) -> tuple[Splits, DataInfo]:
    """Leave-one-out splits plus the `DataInfo` a model is built from."""
    splits = build_splits(seqs, max_len=max_len, shorten_seq_to=shorten_seq_to)
    if len(splits.train) == 0:
        raise AdarecError(
            f"{seqs.source}: no user has the 4 items a training row needs; nothing to train on"
        )
    info = DataInfo(
        n_users=len(seqs),
        n_items=seqs.n_items,
        n_interactions=seqs.n_interactions,
        max_len=splits.max_len,
        source=seqs.source,
        fingerprint=fingerprint(seqs),
    )
    return splits, info

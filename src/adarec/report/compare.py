"""Paired comparisons of run groups against a baseline on per-user outcomes (docs/reports.md).

Per user and group, a metric (NDCG@20 or HR@20 from the answer's rank under the clean
``inf`` history mask, whatever mask the run was configured with) is averaged over the group's
seeds; the users that every seed of both groups has are paired by user id. Each model is then
tested against the baseline with `paired_test`, overall and per history-length bucket (the
buckets of `adarec.evaluate`, ``len<=3``, ``len<=5``, ``len<=10``, and the rest ``len>10``),
and the p-values of the models compared on one metric and bucket get Holm's correction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from adarec.metrics import hit_rate, ndcg
from adarec.report.runs import Group
from adarec.significance import PairedTest, holm, paired_test

MASK = "inf"
METRICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "NDCG@20": lambda r: ndcg(r, 20), "HR@20": lambda r: hit_rate(r, 20),
}
BUCKETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "all": lambda n: np.ones_like(n, dtype=bool),
    "len<=3": lambda n: n <= 3, "len<=5": lambda n: n <= 5, "len<=10": lambda n: n <= 10,
    "len>10": lambda n: n > 10,
}


class UserMetrics(NamedTuple):
    """A group's per-user values, users sorted by id: ``values[metric]`` (U,) is the mean
    over its seeds."""

    users: np.ndarray
    lengths: np.ndarray
    values: dict[str, np.ndarray]


class Comparison(NamedTuple):
    """One model against the baseline on one metric and bucket; ``p_holm`` is corrected
    across the models compared on the same metric and bucket."""

    model: str
    metric: str
    bucket: str
    test: PairedTest
    p_holm: float


def has_outcomes(group: Group) -> bool:
    return all(r.outcomes is not None and MASK in r.outcomes.ranks for r in group.runs)


def user_metrics(group: Group) -> UserMetrics:
    """Per-user metrics of ``group`` averaged over its seeds (users all its seeds share)."""
    users = None
    for run in group.runs:
        u = run.outcomes.user  # type: ignore[union-attr]
        users = u if users is None else np.intersect1d(users, u)
    users = np.unique(users)
    sums = {m: np.zeros(len(users)) for m in METRICS}
    lengths = np.zeros(len(users), dtype=np.int64)
    for run in group.runs:
        o = run.outcomes
        order = np.argsort(o.user)  # type: ignore[union-attr]
        pos = order[np.searchsorted(o.user, users, sorter=order)]  # type: ignore[union-attr]
        ranks = torch.from_numpy(o.ranks[MASK][pos].astype(np.int64))  # type: ignore[union-attr]
        lengths = o.history_length[pos].astype(np.int64)  # type: ignore[union-attr]
        for m, fn in METRICS.items():
            sums[m] += fn(ranks).numpy()
    return UserMetrics(users, lengths, {m: s / len(group.runs) for m, s in sums.items()})


def compare(models: list[Group], baseline: Group, *, n_resamples: int = 2000,
            seed: int = 0) -> list[Comparison]:
    """Every group of ``models`` (with outcomes, not the baseline) against ``baseline``."""
    base = user_metrics(baseline)
    rows: list[tuple[str, str, str, PairedTest]] = []
    for group in models:
        if group is baseline or not has_outcomes(group):
            continue
        ours = user_metrics(group)
        users, i, j = np.intersect1d(ours.users, base.users, return_indices=True)
        lengths = base.lengths[j]
        for metric in METRICS:
            for bucket, select in BUCKETS.items():
                sel = select(lengths)
                if sel.sum() < 2:
                    continue
                test = paired_test(ours.values[metric][i][sel], base.values[metric][j][sel],
                                   n_resamples=n_resamples, seed=seed)
                rows.append((group.name, metric, bucket, test))
    out: list[Comparison] = []
    for metric in METRICS:
        for bucket in BUCKETS:
            family = [r for r in rows if r[1] == metric and r[2] == bucket]
            adjusted = holm([r[3].p for r in family])
            out += [Comparison(*r, p) for r, p in zip(family, adjusted, strict=True)]
    return out

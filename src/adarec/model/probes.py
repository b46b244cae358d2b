"""What ADARec's training logs about its mechanism: the chosen depths, overall and per
history length, the router's weights, and per level the noise and how far the clean estimate
lies from E0 (docs/method.md#what-the-mechanism-does-in-training).

Every value is a detached scalar for one batch; `adarec.train.train_epoch` averages them over
the epoch's batches. Depth histograms per history length are counts of rows (so that the
epoch's histogram of a bucket is exact: its counts over their sum), since a batch holds few
long histories; the overall ``depth_k`` are shares of the batch.
"""

from __future__ import annotations

import math

from torch import Tensor

# History-length buckets of the depth histograms: (name, shortest, longest), disjoint.
LENGTH_BUCKETS = (("len<=3", 1, 3), ("len4-5", 4, 5), ("len6-10", 6, 10),
                  ("len>10", 11, math.inf))


def depth_stats(depth: Tensor, lengths: Tensor) -> dict[str, Tensor]:
    """``depth`` (B, T+1) one-hot depth chosen at the last position, ``lengths`` (B,) real
    items per row -> ``depth_k`` (share of rows at depth k) and ``hist_<bucket>_depth_k``
    (rows of that history-length bucket at depth k)."""
    stats = {f"depth_{k}": v for k, v in enumerate(depth.mean(0))}
    for name, lo, hi in LENGTH_BUCKETS:
        rows = ((lengths >= lo) & (lengths <= hi)).to(depth.dtype)  # (B,)
        for k, v in enumerate(rows @ depth):
            stats[f"hist_{name}_depth_{k}"] = v
    return stats


def router_stats(router: Tensor, used: Tensor) -> dict[str, Tensor]:
    """``router`` (T+1, B) fine-side weights g_k at the last position, ``used`` (T+1, B) the
    level mask -> ``router_k``, the mean g_k over the rows that use level k."""
    means = (router * used).sum(1) / used.sum(1).clamp(min=1)
    return {f"router_{k}": v for k, v in enumerate(means)}


def level_stats(noise_std: Tensor, dist: Tensor) -> dict[str, Tensor]:
    """Per level k = 1..T: ``noise_std_k`` (``sqrt(1 - abar_k)``) and ``level_dist_k``, the
    mean relative distance ``||Ehat_k - E0|| / ||E0||`` over real positions."""
    stats = {f"noise_std_{k}": v for k, v in enumerate(noise_std, start=1)}
    stats.update({f"level_dist_{k}": v for k, v in enumerate(dist, start=1)})
    return stats


def history_lengths(input_ids: Tensor) -> Tensor:
    """(B, L) ids -> (B,) real items per row."""
    return (input_ids > 0).sum(1)



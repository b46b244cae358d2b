"""The report's figures (PNG, matplotlib's Agg backend; docs/reports.md).

Each function draws one figure from runs already loaded and returns the file it wrote, or
None when the runs hold nothing to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from adarec.errors import AdarecError
from adarec.report.compare import BUCKETS
from adarec.report.runs import Group, Run

SELECT = "NDCG@20"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise AdarecError("adarec report draws with matplotlib: pip install 'adarec[report]'"
                          ) from None

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _members(run: Run) -> dict[str, list[dict[str, Any]]]:
    """The per-epoch rows of each trained model of ``run`` ("" alone, or per member)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in run.epochs:
        out.setdefault(row.get("member", ""), []).append(row)
    return out


def learning_curves(groups: list[Group], path: Path) -> Path | None:
    """Validation NDCG@20 against epoch and against cumulative wall time (train + valid)."""
    plt = _pyplot()
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for g_index, group in enumerate(groups):
        colour = f"C{g_index % 10}"
        for run in group.runs:
            for member, rows in _members(run).items():
                epochs = [r["epoch"] for r in rows]
                score = [r["valid"]["all"][SELECT] for r in rows]
                wall = np.cumsum([r["train_seconds"] + r["valid_seconds"] for r in rows])
                label = f"{group.name} seed {run.seed}{' ' + member if member else ''}"
                style = "--" if member.endswith("1") else "-"
                by_epoch.plot(epochs, score, style, color=colour, label=label, lw=1)
                by_time.plot(wall, score, style, color=colour, lw=1)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    by_epoch.set(xlabel="epoch", ylabel=f"validation {SELECT}")
    by_time.set(xlabel="wall time (s, train + validation)", ylabel=f"validation {SELECT}")
    by_epoch.legend(fontsize=7)
    return _save(fig, path)


def bucket_metric(test: dict[str, dict[str, float]], bucket: str, metric: str) -> float:
    """A results JSON's ``test`` metric for ``bucket``; ``len>10`` from ``all`` and
    ``len<=10`` and their user counts."""
    if bucket != "len>10":
        return test[bucket][metric]
    n_all, n_le = test["all"]["users"], test["len<=10"]["users"]
    if n_all == n_le:
        return float("nan")
    return (test["all"][metric] * n_all - test["len<=10"][metric] * n_le) / (n_all - n_le)


def group_users(test: dict[str, dict[str, float]], bucket: str) -> float:
    """How many test users a results JSON's ``bucket`` holds (``len>10`` by difference)."""
    if bucket != "len>10":
        return test[bucket]["users"]
    return test["all"]["users"] - test["len<=10"]["users"]


def bucket_bars(groups: list[Group], path: Path, metric: str = SELECT) -> Path:
    """Test ``metric`` per history-length bucket, mean over seeds (error bar: std)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(BUCKETS))
    for k, group in enumerate(groups):
        values = np.array([[bucket_metric(r.results["test"], b, metric) for b in BUCKETS]
                           for r in group.runs])  # (seeds, buckets)
        std = values.std(0, ddof=1) if len(values) > 1 else None
        ax.bar(x + (k - (len(groups) - 1) / 2) * width, values.mean(0), width, yerr=std,
               label=f"{group.name} ({len(values)} seed{'s' if len(values) > 1 else ''})")
    users = [int(group_users(groups[0].first.results["test"], b)) for b in BUCKETS]
    ax.set_xticks(x, [f"{b}\n({n} users)" for b, n in zip(BUCKETS, users, strict=True)])
    ax.set(xlabel="users by history length", ylabel=f"test {metric}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _levels(rows: list[dict[str, Any]], prefix: str) -> np.ndarray:
    """(epochs, T+1) per-epoch training stats ``<prefix>_<k>`` of one model's log."""
    names = sorted((k for k in rows[0]["losses"] if k.startswith(prefix + "_")),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    return np.array([[r["losses"][k] for k in names] for r in rows])


def depth_figure(group: Group, path: Path) -> Path | None:
    """ADARec's chosen depth: per length bucket on the test users (final pass), and the
    training batches' depth shares against epoch (per-epoch log)."""
    run = group.first
    depth = run.outcomes.extra.get("depth") if run.outcomes is not None else None
    logged = [r for r in run.epochs if "depth_0" in r.get("losses", {})]
    if depth is None and not logged:
        return None
    plt = _pyplot()
    n_panels = (depth is not None) + bool(logged)
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4), squeeze=False)
    axes = list(axes[0])
    if depth is not None:
        lengths = run.outcomes.history_length  # type: ignore[union-attr]
        n_levels = len(run.results.get("analysis", {}).get("adarec", {}).get(
            "depth_counts", [])) or int(depth.max()) + 1
        width = 0.8 / len(BUCKETS)
        for k, (bucket, select) in enumerate(BUCKETS.items()):
            chosen = depth[select(lengths)]
            share = np.bincount(chosen, minlength=n_levels) / max(1, len(chosen))
            axes[0].bar(np.arange(n_levels) + (k - 2) * width, share, width,
                        label=f"{bucket} ({len(chosen)} users)")
        axes[0].set(xlabel="chosen depth (test users, final pass)", ylabel="share of users",
                    title=f"{group.name} seed {run.seed}")
        axes[0].legend(fontsize=7)
    if logged:
        shares = _levels(logged, "depth")
        colours = plt.get_cmap("viridis")(np.linspace(0, 1, shares.shape[1]))
        for level in range(shares.shape[1]):
            axes[-1].plot([r["epoch"] for r in logged], shares[:, level], color=colours[level],
                          label=f"depth {level}")
        axes[-1].set(xlabel="epoch", ylabel="share of training rows",
                    title="depth chosen in training (per-epoch log)")
        axes[-1].legend(fontsize=6, ncol=2)
    return _save(fig, path)


def router_gate_figure(group: Group, path: Path) -> Path | None:
    """ADARec's router weight ``g_k`` per level (per-epoch log and final pass) and the
    gate's distribution over test users and dimensions (final pass)."""
    run = group.first
    logged = [r for r in run.epochs if "router_0" in r.get("losses", {})]
    final = run.results.get("analysis", {}).get("adarec")
    if not logged and final is None:
        return None
    plt = _pyplot()
    n_panels = 1 + (final is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4), squeeze=False)
    router_ax = axes[0][0]
    if logged:
        weights = _levels(logged, "router")
        router_ax.plot(np.arange(weights.shape[1]), weights[-1], "o-",
                       label=f"training, epoch {logged[-1]['epoch']}")
    if final is not None:
        router_ax.plot(np.arange(len(final["router_mean_used"])), final["router_mean_used"],
                       "s-", label="test users, best checkpoint")
    router_ax.set(xlabel="level k", ylabel="mean fine-side weight g_k (users using k)",
                  title=f"router, {group.name} seed {run.seed}")
    router_ax.legend(fontsize=7)
    if final is not None:
        gate_ax = axes[0][1]
        hist = final["gate_histogram"]
        edges = np.array(hist["edges"])
        gate_ax.bar(edges[:-1], hist["counts"], np.diff(edges), align="edge")
        gate_ax.set(xlabel="gate value (weight of the fine side)", ylabel="count",
                    title=f"gate, mean {final['gate_mean']:.3f}")
    return _save(fig, path)

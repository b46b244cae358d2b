"""`adarec report`: a folder of runs -> ``report.md`` and PNG figures (docs/reports.md)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from adarec.errors import AdarecError
from adarec.paper import METRICS, paper_row
from adarec.report import figures
from adarec.report.compare import MASK, Comparison, compare, has_outcomes
from adarec.report.replay import needs_replay, replay
from adarec.report.runs import Group, find_baseline, find_runs, group_runs

COLLAPSE = (("effective_rank", "eff. rank"), ("uniformity", "uniformity"),
            ("alignment", "alignment"), ("top10_variance_share", "top-10 PC share"))


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(head), "|" + "---|" * len(head), *(_row(r) for r in rows)]


def _mean_std(values: list[float]) -> tuple[float, str]:
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return mean, f"{mean:.4f}{spread}"


def accuracy_rows(groups: list[Group]) -> list[str]:
    """Per group: test metrics as mean ± std over seeds, the paper's row and the gap."""
    head = ["runs", "protocol, mask", "seeds", *METRICS, "paper row",
            *(f"gap {m}" for m in METRICS), "per-user outcomes"]
    rows = []
    for g in groups:
        cfg = g.first.config
        means, cells = zip(*(_mean_std([r.results["test"]["all"][m] for r in g.runs])
                             for m in METRICS), strict=True)
        paper = paper_row(g.first.dataset, g.first.model, g.first.shorten)
        label, gaps = ("-", ["-"] * len(METRICS)) if paper is None else (
            paper[0] + " (" + ", ".join(f"{v:.4f}" for v in paper[1]) + ")",
            [f"{(o - p) / p:+.1%}" for o, p in zip(means, paper[1], strict=True)])
        seeds = f"{len(g.runs)} ({', '.join(str(r.seed) for r in g.runs)})"
        rows.append([g.name, f"{g.protocol}, {cfg['train']['history_mask']}", seeds, *cells,
                     label, *gaps, "yes" if has_outcomes(g) else "no"])
    return _table(head, rows)


def collapse_rows(groups: list[Group]) -> list[str]:
    """Per group: the collapse measures of the final pass, mean ± std over seeds."""
    rows = []
    for g in groups:
        found = [r.results["analysis"]["collapse"] for r in g.runs
                 if "collapse" in r.results.get("analysis", {})]
        if not found:
            rows.append([g.name, "0", *(["-"] * (len(COLLAPSE) + 1))])
            continue
        cells = [_mean_std([f[key] for f in found])[1] for key, _ in COLLAPSE]
        rows.append([g.name, str(len(found)), str(found[0]["dim"]), *cells])
    return _table(["runs", "runs measured", "width D", *(t for _, t in COLLAPSE)], rows)


def _p(p: float) -> str:
    return "-" if p != p else (f"{p:.2e}" if p < 1e-3 else f"{p:.3f}")


def comparison_rows(comparisons: list[Comparison]) -> list[str]:
    rows = [[c.model, c.metric, c.bucket, str(c.test.n), str(c.test.n_nonzero),
             f"{c.test.mean_diff:+.4f} [{c.test.ci[0]:+.4f}, {c.test.ci[1]:+.4f}]",
             _p(c.test.p), _p(c.p_holm)] for c in comparisons]
    return _table(["model", "metric", "bucket", "paired users", "nonzero diffs",
                   "mean diff [95% bootstrap CI]", "Wilcoxon p", "Holm p"], rows)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def dataset_section(dataset: str, groups: list[Group], out: Path, baseline: str | None,
                    n_resamples: int) -> list[str]:
    lines = [f"## {dataset}", "", "### Test metrics over seeds", "", *accuracy_rows(groups),
             "", "### Collapse of the final user representations (test users)", "",
             *collapse_rows(groups), ""]
    lines += ["### Paired tests against the baseline", ""]
    done: set[str] = set()
    for protocol in dict.fromkeys(g.first.shorten for g in groups):
        members = [g for g in groups if g.first.shorten == protocol]
        base = find_baseline(groups, baseline, members[0])
        label = members[0].protocol
        if base is None:
            lines += [f"{label}: no baseline group ({baseline or 'a SASRec preset'}); "
                      "no tests.", ""]
            continue
        if not has_outcomes(base):
            lines += [f"{label}: the baseline `{base.name}` has no per-user outcomes; "
                      "no tests.", ""]
            continue
        comparisons = compare(members, base, n_resamples=n_resamples)
        done |= {c.model for c in comparisons} | {base.name}
        lines += [f"{label}: baseline `{base.name}` ({len(base.runs)} seeds), mask "
                  f"`{MASK}`.", ""]
        lines += (comparison_rows(comparisons) if comparisons
                  else ["No other group of this protocol has per-user outcomes."])
        lines.append("")
    untested = [g.name for g in groups if g.name not in done]
    if untested:
        lines += ["Listed without tests (no per-user outcomes stored, or no baseline in "
                  "their protocol): " + ", ".join(f"`{n}`" for n in untested) + ".", ""]
    lines += ["### Figures", ""]
    stem = _slug(dataset)
    drawn: list[tuple[str, Path | None]] = [
        ("Validation NDCG@20 against epoch and wall time",
         figures.learning_curves(groups, out / f"{stem}-curves.png")),
        ("Test NDCG@20 per history-length bucket (mean over seeds, std as error bar)",
         figures.bucket_bars(groups, out / f"{stem}-buckets.png")),
    ]
    for g in groups:
        if g.first.model == "adarec":
            drawn += [
                (f"{g.name}: chosen depth per length bucket and in training",
                 figures.depth_figure(g, out / f"{stem}-{_slug(g.name)}-depth.png")),
                (f"{g.name}: router weight per level and gate distribution",
                 figures.router_gate_figure(g, out / f"{stem}-{_slug(g.name)}-router.png")),
            ]
    for title, path in drawn:
        if path is not None:
            lines += [f"{title}:", "", f"![{title}]({path.name})", ""]
    return lines


def build_report(paths: list[Path], output: Path, *, baseline: str | None = None,
                 n_resamples: int = 2000, replay_checkpoints: bool = True,
                 data_dir: Path | None = None, device: str = "auto") -> Path:
    """Write ``output/report.md`` and its figures from every run under ``paths``; runs with
    a checkpoint but no stored final pass get one first (``replay_checkpoints``)."""
    if output.exists() and not output.is_dir():
        raise AdarecError(f"--output {output} is a file; give a folder for report.md and "
                          "the figures")
    runs = find_runs(paths)
    if baseline is not None:
        groups = [g for gs in group_runs(runs).values() for g in gs]
        if not any(g.name == baseline or g.first.config.get("preset") == baseline
                   for g in groups):
            names = ", ".join(sorted({g.name for g in groups}))
            raise AdarecError(f"--baseline {baseline} matches no run group or preset here "
                              f"(groups: {names})")
    stale = [r for r in runs if replay_checkpoints and needs_replay(r)]
    for run in stale:
        replay(run, data_dir=data_dir, device=device)
    replayed = [r.name for r in stale]
    output.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Report", "",
        "Written by `adarec report` from " + ", ".join(f"`{p}`" for p in paths) + f" ({len(runs)}"
        " runs). Test set, full ranking, the checkpoint with the best validation NDCG@20; "
        "mean ± sample std over seeds. Gap = (ours - paper) / paper. Paired tests: "
        "Wilcoxon signed-rank on per-user differences (zeros dropped), Holm across the "
        "models on each metric and bucket, percentile bootstrap interval of the mean "
        "difference; buckets as in `adarec evaluate` (`len<=b`: whole history <= b items). "
        "See docs/reports.md.", "",
        *([f"Final pass recomputed from the checkpoint (no stored outcomes) for: "
           f"{', '.join(f'`{n}`' for n in replayed)}.", ""] if replayed else []),
    ]
    for dataset, groups in group_runs(runs).items():
        lines += dataset_section(dataset, groups, output, baseline, n_resamples)
    path = output / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path

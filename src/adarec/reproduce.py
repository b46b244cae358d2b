"""Reproduction runs: train presets to early stopping over seeds, keep their results under
``results/<dataset>/`` and put them beside the paper's numbers in a markdown table.

Each run writes ``<name>-seed<k>.json`` (the `adarec.train.fit` results: every metric, the
per-bucket metrics, both history masks, best epoch, stop reason, epoch times, device, commit,
command), ``<name>-seed<k>.metrics.jsonl`` (its per-epoch log) and
``<name>-seed<k>.outcomes.npz`` (its per-user test ranks, `adarec.outcomes`); ``README.md``
in the same folder is rebuilt from every JSON there after each run. A run whose JSON exists
is skipped, so an interrupted reproduction resumes; a run that was cut short (its run
directory ``<runs-dir>/<name>`` has a ``last.pt``) resumes from its last completed epoch
(docs/resume.md).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adarec.config import RunConfig, load_config
from adarec.errors import AdarecError
from adarec.outcomes import FILE_NAME as OUTCOMES_FILE
from adarec.paper import METRICS, TABLE1, TABLE2, paper_row, paper_rows
from adarec.resume import LAST, resumable, resume_config
from adarec.train import fit


def run_name(preset: str, tag: str | None, seed: int) -> str:
    return f"{preset}{'-' + tag if tag else ''}-seed{seed}"


def default_tag(config: RunConfig, tag: str | None) -> str | None:
    """``tag``, or ``short{K}`` for the sparse protocol when none is given, so that a sparse
    run and a full one of the same preset never share a name (and a results file)."""
    k = config.data.shorten_seq_to
    return tag if tag is not None or k is None else f"short{k}"


def check_same_protocol(target: Path, config: RunConfig) -> None:
    """Refuse to take ``target`` (an existing results file) for ``config`` when it holds
    another dataset or protocol: the two runs would share one name."""
    try:
        saved = json.loads(target.read_text())["config"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        raise AdarecError(f"{target} exists but cannot be read as a results file; move it "
                          "away or use --force") from None
    asked = config.data
    for key, value in (("dataset", asked.dataset), ("shorten_seq_to", asked.shorten_seq_to)):
        if saved.get(key) != value:
            raise AdarecError(
                f"{target} holds a run with data.{key}={saved.get(key)}, not {value}: give "
                "this run its own name with --tag, or use --force to replace it")


def reproduce(
    presets: Iterable[str], seeds: Iterable[int], *, overrides: list[str], tag: str | None,
    results_root: Path, runs_dir: Path, force: bool = False, command: str | None = None,
    progress: bool = True, echo: Any = print,
) -> list[Path]:
    """Train every preset x seed not yet done; returns the results folders touched."""
    folders: list[Path] = []
    for preset in presets:
        for seed in seeds:
            config = load_config(preset, overrides=[
                *overrides, f"train.seed={seed}", f"output_dir={runs_dir}"])
            folder = results_root / config.data.dataset
            folder.mkdir(parents=True, exist_ok=True)
            name = run_name(preset, default_tag(config, tag), seed)
            target = folder / f"{name}.json"
            if target.is_file() and not force:
                check_same_protocol(target, config)
                echo(f"{name}: {target} exists, skipped (use --force to run again)")
            else:
                run_dir, results = _train_or_resume(config, name, runs_dir, force=force,
                                                    command=command, progress=progress,
                                                    echo=echo)
                results["name"] = name
                _write_atomic(target, json.dumps(results, indent=2))
                shutil.copyfile(run_dir / "metrics.jsonl", folder / f"{name}.metrics.jsonl")
                shutil.copyfile(run_dir / OUTCOMES_FILE, folder / f"{name}.outcomes.npz")
                echo(f"{name}: {summary_line(results)}")
            write_table(folder)
            if folder not in folders:
                folders.append(folder)
    return folders


def _train_or_resume(
    config: RunConfig, name: str, runs_dir: Path, *, force: bool, command: str | None,
    progress: bool, echo: Any,
) -> tuple[Path, dict[str, Any]]:
    """Train ``config`` as ``runs_dir/name``; a run there that was interrupted (it has a
    ``last.pt``, and no finished ``results.json``) is resumed instead of started again,
    unless ``force``. Its saved configuration must be the one asked for."""
    run_dir = runs_dir / name
    if not force and (run_dir / LAST).is_file():
        saved = resume_config(run_dir, max_epochs=config.train.max_epochs,
                              max_minutes=config.train.max_minutes, finished_ok=True)
        if saved != config:
            raise AdarecError(f"{run_dir} holds an unfinished run of another configuration; "
                              "move it away, or use --force to start a new run beside it")
        results_file = run_dir / "results.json"
        if results_file.is_file() and not resumable(run_dir, saved):
            echo(f"{name}: {run_dir} has finished; its results are taken")
            return run_dir, json.loads(results_file.read_text())
        echo(f"{name}: resuming {run_dir} ({config.data.dataset})")
        return fit(saved, progress=progress, command=command, resume=run_dir)
    echo(f"{name}: training ({config.data.dataset})")
    return fit(config, run_name=name, progress=progress, command=command)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # runs may write side by side
    tmp.write_text(text)
    tmp.replace(path)


def summary_line(r: dict[str, Any]) -> str:
    test = r["test"]["all"]
    return (f"test {', '.join(f'{m} {test[m]:.4f}' for m in METRICS)}; best epoch "
            f"{r['best_epoch']} of {r['epochs_run']} ({r.get('stop_reason')}); "
            f"{r.get('median_train_seconds', float('nan')):.2f} s train + "
            f"{r.get('median_valid_seconds', float('nan')):.2f} s valid per epoch")


def _plain(value: Any) -> str:
    """Per-member values (the release's ensemble) as "a, b"; anything else as str."""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _cells(values: Iterable[float]) -> list[str]:
    return [f"{v:.4f}" for v in values]


def _gap(ours: float, paper: float) -> str:
    return f"{(ours - paper) / paper:+.1%}"


def table_rows(results: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: one per run, with its paper row and the relative gap on each metric."""
    head = ["run", "protocol", *METRICS, "paper row", *(f"gap {m}" for m in METRICS),
            "best / run epochs", "stop", "s/epoch train + valid", "device"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cfg = r["config"]
        k = cfg["data"]["shorten_seq_to"]
        mask = cfg["train"]["history_mask"]
        protocol = (f"shorten_seq_to={k}" if k else "full") + f", mask {mask}"
        ours = [r["test"]["all"][m] for m in METRICS]
        paper = paper_row(cfg["data"]["dataset"], cfg["model"]["name"], k)
        label, gaps = "-", ["-"] * len(METRICS)
        if paper is not None:
            label = paper[0]
            gaps = [_gap(o, p) for o, p in zip(ours, paper[1], strict=True)]
        epochs = f"{_plain(r['best_epoch'])} / {r['epochs_run']}"
        seconds = (f"{r.get('median_train_seconds', float('nan')):.2f} + "
                   f"{r.get('median_valid_seconds', float('nan')):.2f}")
        lines.append("| " + " | ".join([
            r.get("name", cfg["preset"]), protocol, *_cells(ours), label, *gaps, epochs,
            _plain(r.get("stop_reason")), seconds, r.get("device", "-"),
        ]) + " |")
    return lines


def paper_gap_rows(results: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: each run against every paper row (ADARec, ELCRec, SASRec) of its
    dataset and protocol, as relative gaps."""
    head = ["run", "paper row", *(f"gap {m}" for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cfg = r["config"]
        ours = [r["test"]["all"][m] for m in METRICS]
        for label, row in paper_rows(cfg["data"]["dataset"], cfg["data"]["shorten_seq_to"]):
            gaps = [_gap(o, p) for o, p in zip(ours, row, strict=True)]
            lines.append("| " + " | ".join([r.get("name", cfg["preset"]), label, *gaps]) + " |")
    return lines if len(lines) > 2 else []


def other_mask_rows(results: list[dict[str, Any]]) -> list[str]:
    head = ["run", "history mask", *METRICS, "len<=5 users", *(f"len<=5 {m}" for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for mask, test in r.get("test_by_history_mask", {}).items():
            sparse = test["len<=5"]
            lines.append("| " + " | ".join([
                r.get("name", r["config"]["preset"]), mask,
                *_cells(test["all"][m] for m in METRICS), str(sparse["users"]),
                *_cells(sparse[m] for m in METRICS),
            ]) + " |")
    return lines


def seed_mean_rows(results: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of mean ± sd over seeds, one per run name that has 2 or more seeds."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        base = r.get("name", r["config"]["preset"]).rsplit("-seed", 1)[0]
        groups.setdefault(base, []).append(r)
    head = ["runs", "seeds", *METRICS, "paper row", "gap NDCG@20 (mean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for base, runs in groups.items():
        if len(runs) < 2:
            continue
        cells, means = [], []
        for m in METRICS:
            values = [r["test"]["all"][m] for r in runs]
            means.append(statistics.mean(values))
            cells.append(f"{means[-1]:.4f} ± {statistics.stdev(values):.4f}")
        cfg = runs[0]["config"]
        paper = paper_row(cfg["data"]["dataset"], cfg["model"]["name"],
                          cfg["data"]["shorten_seq_to"])
        label, gap = ("-", "-") if paper is None else (paper[0], _gap(means[-1], paper[1][-1]))
        seeds = ", ".join(str(r["config"]["train"]["seed"]) for r in runs)
        lines.append("| " + " | ".join([base, seeds, *cells, label, gap]) + " |")
    return lines if len(lines) > 2 else []


def write_table(folder: Path) -> Path:
    """(Re)write ``folder/README.md`` from every run JSON in ``folder``."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    dataset = folder.name
    out = [
        f"# Reproduction on {dataset}",
        "",
        "Written by `adarec reproduce` from the JSON files in this folder (one per run; the "
        "`.metrics.jsonl` beside each is its per-epoch log). Test set, full ranking, the "
        "checkpoint with the best validation NDCG@20. Gap = (ours - paper) / paper. Each "
        "JSON holds the exact command, commit, device and configuration.",
        *(["", "How these runs were made, and what they do and do not show: "
                "[NOTES.md](NOTES.md)."] if (folder / "NOTES.md").is_file() else []),
        "",
        "## Our runs beside the paper",
        "",
        *table_rows(results),
        "",
        *(["## Mean over seeds", "", *means, ""] if (means := seed_mean_rows(results)) else []),
        *(["## Each run against every paper row of its protocol", "", *gaps, ""]
          if (gaps := paper_gap_rows(results)) else []),
        "## Both history masks, and users with history <= 5",
        "",
        "`inf`: history and padding never ranked (the clean protocol); `zero`: the original "
        "release's masking ([protocol](../../docs/protocol.md#history-masks)).",
        "",
        *other_mask_rows(results),
        "",
        "## The paper's numbers ([docs](../../docs/paper-numbers.md))",
        "",
        "| table | model | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for label, table in (("Table 1 (all users)", TABLE1), ("Table 2 (shorten_seq_to=5)", TABLE2)):
        for model, row in table.get(dataset, {}).items():
            out.append(f"| {label} | {model} | " + " | ".join(_cells(row)) + " |")
    path = folder / "README.md"
    _write_atomic(path, "\n".join(out) + "\n")
    return path

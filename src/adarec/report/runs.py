"""Finding and grouping the runs a report covers (docs/reports.md).

A path given to `adarec report` is one of:

* a run directory (``results.json``, ``metrics.jsonl``, ``outcomes.npz``, ``best.pt``);
* a results file ``<name>.json`` of `adarec reproduce`, with ``<name>.metrics.jsonl`` and
  ``<name>.outcomes.npz`` beside it when they exist;
* a folder: every results file and every run directory below it (at any depth). JSON files
  that are not run results (benchmark records, say) are passed over.

Runs are grouped by dataset and by name without its ``-seed<k>`` suffix (``sasrec-beauty``,
``adarec-beauty-short5``): the seeds of one group are repeats of one configuration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adarec.errors import AdarecError
from adarec.outcomes import FILE_NAME as OUTCOMES_FILE
from adarec.outcomes import Outcomes, load_outcomes

_SEED = re.compile(r"-seed\d+(-\d+)?$")
_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")  # `new_run_dir`'s default names


@dataclass
class Run:
    """One training run: its results, per-epoch log rows and (when stored) outcomes."""

    name: str
    results: dict[str, Any]
    epochs: list[dict[str, Any]]
    outcomes: Outcomes | None
    source: Path
    checkpoint: Path | None = None  # a run directory's best.pt (see `adarec.report.replay`)

    @property
    def config(self) -> dict[str, Any]:
        return self.results["config"]

    @property
    def dataset(self) -> str:
        return self.config["data"]["dataset"]

    @property
    def model(self) -> str:
        return self.config["model"]["name"]

    @property
    def shorten(self) -> int | None:
        return self.config["data"].get("shorten_seq_to")

    @property
    def seed(self) -> int:
        return self.config["train"]["seed"]

    @property
    def group(self) -> str:
        """The name without its seed suffix (or the preset, for a default-named run)."""
        if _SEED.search(self.name):
            return _SEED.sub("", self.name)
        if _STAMP.search(self.name):
            return self.config.get("preset", self.name)
        return self.name


@dataclass
class Group:
    """The seeds of one configuration on one dataset."""

    name: str
    runs: list[Run]

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def protocol(self) -> str:
        k = self.first.shorten
        return f"shorten_seq_to={k}" if k else "full"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdarecError(f"{path}: not a readable JSON file ({exc})") from None


def _is_run(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("config"), dict) and "test" in data


def _epochs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise AdarecError(f"{path}:{i}: not a JSON line") from None
    return rows


def _load(results_path: Path, metrics: Path, outcomes: Path, name: str) -> Run:
    data = _read_json(results_path)
    if not _is_run(data):
        raise AdarecError(f"{results_path} is not the results of a run (no config / test)")
    return Run(name=data.get("name") or name, results=data, epochs=_epochs(metrics),
               outcomes=load_outcomes(outcomes) if outcomes.is_file() else None,
               source=results_path)


def _results_file(path: Path) -> Run:
    stem = path.name.removesuffix(".json")
    return _load(path, path.with_name(f"{stem}.metrics.jsonl"),
                 path.with_name(f"{stem}.outcomes.npz"), stem)


def _run_dir(path: Path) -> Run:
    run = _load(path / "results.json", path / "metrics.jsonl", path / OUTCOMES_FILE, path.name)
    run.checkpoint = path / "best.pt" if (path / "best.pt").is_file() else None
    return run


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run under ``paths`` (see the module docstring), each once, in path order."""
    runs: list[Run] = []
    seen: set[Path] = set()

    def add(run: Run) -> None:
        if run.source.resolve() not in seen:
            seen.add(run.source.resolve())
            runs.append(run)

    for path in paths:
        if path.is_file():
            add(_results_file(path))
        elif (path / "results.json").is_file():
            add(_run_dir(path))
        elif path.is_dir():
            for file in sorted(path.rglob("*.json")):
                if file.name == "results.json":
                    add(_run_dir(file.parent))
                elif _is_run(_read_json(file)):
                    add(_results_file(file))
        else:
            raise AdarecError(f"{path}: no such file or directory")
    if not runs:
        raise AdarecError(f"no run results found under {', '.join(map(str, paths))}")
    return runs


def group_runs(runs: list[Run]) -> dict[str, list[Group]]:
    """``{dataset: [groups]}``, datasets and groups in the order they first appear; each
    group's runs sorted by seed."""
    out: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        out.setdefault(run.dataset, {}).setdefault(run.group, []).append(run)
    return {ds: [Group(name, sorted(rs, key=lambda r: r.seed)) for name, rs in groups.items()]
            for ds, groups in out.items()}


def find_baseline(groups: list[Group], wanted: str | None, like: Group) -> Group | None:
    """The baseline group for ``like``'s protocol: the group named ``wanted`` (or whose
    preset is ``wanted``), by default the SASRec one; None when there is none."""
    same = [g for g in groups if g.first.shorten == like.first.shorten]
    if wanted is None:
        found = [g for g in same if g.first.model == "sasrec"]
    else:
        found = ([g for g in same if g.name == wanted]
                 or [g for g in same if g.first.config.get("preset") == wanted])
    return found[0] if found else None

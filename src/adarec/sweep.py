"""`adarec sweep`: hyperparameter search with Optuna over a preset (docs/reports.md).

A search space is a YAML mapping from ``section.key`` (any configuration key, as for
``--set``) to either a list of values (a categorical choice) or ``{low, high}`` with optional
``log: true`` / ``step`` (a float range, or an int range when both bounds are ints). Each
trial trains the preset with the trial's values (`adarec.train.fit`), reports the validation
NDCG@20 after every epoch to Optuna's pruner (a median pruner: a trial whose curve falls
below the median of earlier trials at the same epoch stops early) and returns its best
validation NDCG@20. Test metrics are written into each trial's run directory, like any run,
but nothing here reads them: selection is on validation only.

The study lives in ``storage`` (an Optuna RDB URL, SQLite by default), so a sweep resumes
where it stopped and several workers, on one machine or many (against one database server),
can share it: each stops once the study holds ``trials`` finished (complete or pruned)
trials. The best trial's configuration is written as a YAML file that ``adarec train
--config`` reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from adarec.config import RunConfig, load_config
from adarec.errors import AdarecError
from adarec.train import SELECT_METRIC, EpochLog, fit

Space = dict[str, list[Any] | dict[str, Any]]


def read_space(path: Path) -> Space:
    """Read and check a search-space YAML file (see the module docstring)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise AdarecError(f"cannot read search space {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AdarecError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise AdarecError(f"{path}: expected a mapping of section.key -> values or range")
    for key, dim in data.items():
        where = f"{path}: {key}"
        if not isinstance(key, str) or key.count(".") != 1:
            raise AdarecError(f"{where}: keys are section.key, e.g. adarec.max_depth")
        if isinstance(dim, list):
            if not dim:
                raise AdarecError(f"{where}: an empty list of choices")
        elif isinstance(dim, dict):
            if not {"low", "high"} <= set(dim) or set(dim) - {"low", "high", "log", "step"}:
                raise AdarecError(f"{where}: a range is {{low, high[, log][, step]}}")
            if not all(isinstance(dim[b], int | float) for b in ("low", "high")) or \
                    dim["low"] > dim["high"]:
                raise AdarecError(f"{where}: low and high must be numbers with low <= high")
        else:
            raise AdarecError(f"{where}: expected a list of choices or a {{low, high}} range")
    return data


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """The trial's value for every dimension of ``space``."""
    values: dict[str, Any] = {}
    for key, dim in space.items():
        if isinstance(dim, list):
            values[key] = trial.suggest_categorical(key, dim)
        elif isinstance(dim["low"], int) and isinstance(dim["high"], int) and \
                isinstance(dim.get("step", 1), int):
            values[key] = trial.suggest_int(key, dim["low"], dim["high"],
                                            step=dim.get("step", 1), log=dim.get("log", False))
        else:
            values[key] = trial.suggest_float(key, dim["low"], dim["high"],
                                              step=dim.get("step"), log=dim.get("log", False))
    return values


def trial_config(preset: str, overrides: list[str], values: dict[str, Any]) -> RunConfig:
    return load_config(preset, overrides=[*overrides, *(f"{k}={v}" for k, v in values.items())])


def best_valid(results: dict[str, Any]) -> float:
    """The run's best validation NDCG@20 (the mean over members for the release)."""
    valid = results["valid"]
    parts = valid if isinstance(valid, list) else [valid]
    return sum(p["all"][SELECT_METRIC] for p in parts) / len(parts)


def write_best(config: RunConfig, path: Path, header: list[str]) -> None:
    """``config`` as a YAML file for ``adarec train --config`` (its output_dir left out)."""
    data = config.to_dict()
    data.pop("output_dir", None)
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(data, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def sweep(
    preset: str, space: Space, *, trials: int, storage: str, study_name: str,
    overrides: list[str], runs_dir: Path, best_path: Path, sampler_seed: int | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run trials until the study holds ``trials`` finished ones; write the best config."""
    try:
        import optuna
        from optuna.trial import TrialState
    except ImportError:
        raise AdarecError("adarec sweep runs on Optuna: pip install 'adarec[sweep]'") from None

    if trials < 1:
        raise AdarecError(f"--trials must be >= 1, got {trials}")
    base = [*overrides, f"output_dir={runs_dir}"]
    # Every dimension's first value must make a valid configuration (typos fail here).
    trial_config(preset, base, {k: d[0] if isinstance(d, list) else d["low"]
                                for k, d in space.items()})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, load_if_exists=True, direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=sampler_seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        )
    except (ValueError, ImportError, optuna.exceptions.StorageInternalError) as exc:
        raise AdarecError(f"cannot open the study's storage {storage!r}: {exc}") from None
    finished = (TrialState.COMPLETE, TrialState.PRUNED)

    def objective(trial: Any) -> float:
        values = suggest(trial, space)
        steps = itertools.count()

        def on_epoch(log: EpochLog) -> None:
            trial.report(log.valid["all"][SELECT_METRIC], next(steps))
            if trial.should_prune():
                raise optuna.TrialPruned()

        run_dir, results = fit(trial_config(preset, base, values),
                               run_name=f"{study_name}-trial{trial.number}", progress=False,
                               on_epoch=on_epoch)
        trial.set_user_attr("run_dir", str(run_dir))
        return best_valid(results)

    def report(study: Any, trial: Any) -> None:
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        echo(f"trial {trial.number}: {trial.state.name.lower()}, valid {SELECT_METRIC} "
             f"{value}, {trial.params}")

    done = len(study.get_trials(deepcopy=False, states=finished))
    if done < trials:
        study.optimize(objective, n_trials=trials - done, callbacks=[
            optuna.study.MaxTrialsCallback(trials, states=finished), report])
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise AdarecError(f"study {study_name!r} has no completed trial (all pruned or failed)")
    best = study.best_trial
    write_best(trial_config(preset, base, best.params), best_path, [
        f"adarec sweep: best of {len(complete)} completed trials of study {study_name!r} "
        f"({storage})",
        f"trial {best.number}: validation {SELECT_METRIC} {best.value:.4f}, {best.params}",
        f"run directory: {best.user_attrs.get('run_dir', '-')}",
    ])
    return {"best_trial": best.number, "best_value": best.value, "params": best.params,
            "finished": len(study.get_trials(deepcopy=False, states=finished)),
            "best_config": best_path}

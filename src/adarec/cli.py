"""The `adarec` command: parse, build, call. No logic of its own beyond wiring."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from adarec.errors import AdarecError

try:  # typer >= 0.2x vendors click; older releases use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors

app = typer.Typer(
    help="ADARec and its baselines for sequential recommendation.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
data_app = typer.Typer(help="List, download, describe and import datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

Opt = typer.Option


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def _metrics_table(columns: dict[str, dict[str, float]]) -> str:
    """Rows = metrics, one column per named result."""
    names = list(next(iter(columns.values())))
    names = [n for n in names if n != "users"]
    rows = [("metric", *columns)]
    rows += [(n, *(f"{c[n]:.4f}" for c in columns.values())) for n in names]
    return _table(rows)


def _one_process(command: str) -> None:
    """Refuse a command that trains several runs from being launched by torchrun."""
    from adarec.distributed import launched

    if launched().size > 1:
        raise AdarecError(f"adarec {command} runs in one process; under torchrun only "
                          "`adarec train` trains (docs/distributed.md)")


def _command_line() -> str:
    """How this command was typed, as ``adarec ...`` (also under ``python -m adarec``)."""
    return shlex.join(["adarec", *sys.argv[1:]])


@app.command()
def train(
    preset: Annotated[str | None, Opt(help="Preset name (see `adarec presets`).")] = None,
    config: Annotated[Path | None, Opt("--config", help="YAML file over the preset.")] = None,
    dataset: Annotated[str | None, Opt(help="Benchmark name or 'synthetic'.")] = None,
    data_file: Annotated[Path | None, Opt(help="Your own sequence file.")] = None,
    data_dir: Annotated[Path | None, Opt(help="Directory holding benchmark files.")] = None,
    shorten_seq_to: Annotated[int | None, Opt(help="Sparse protocol: keep last K.")] = None,
    max_epochs: Annotated[int | None, Opt(help="Upper bound on epochs.")] = None,
    max_minutes: Annotated[float | None, Opt(help="Time limit on training.")] = None,
    seed: Annotated[int | None, Opt(help="Random seed.")] = None,
    device: Annotated[str | None, Opt(help="auto, cpu or cuda.")] = None,
    output_dir: Annotated[Path | None, Opt(help="Where run directories go.")] = None,
    run_name: Annotated[str | None, Opt(help="Run directory name.")] = None,
    set_: Annotated[list[str] | None, Opt("--set", help="Override: section.key=value.")] = None,
    progress: Annotated[bool, Opt(help="Show progress bars.")] = True,
    resume: Annotated[Path | None, Opt(help="Continue this interrupted run directory from "
                                       "its last.pt, with its saved configuration (only "
                                       "--max-epochs and --max-minutes may be raised).")] = None,
) -> None:
    """Train to early stopping on validation NDCG@20, then test the best checkpoint once."""
    from adarec.config import load_config
    from adarec.inputs import absolute, check_run_name, read_text_file
    from adarec.resume import refuse_changes, resumable, resume_config
    from adarec.train import fit

    if resume is not None:
        refuse_changes({"--preset": preset, "--config": config, "--dataset": dataset,
                        "--data-file": data_file, "--data-dir": data_dir,
                        "--shorten-seq-to": shorten_seq_to, "--seed": seed,
                        "--device": device, "--output-dir": output_dir,
                        "--run-name": run_name, "--set": set_})
        cfg = resume_config(resume, max_epochs=max_epochs, max_minutes=max_minutes)
        run_dir, results = fit(cfg, progress=progress, command=_command_line(), resume=resume)
        _report_run(run_dir, results, cfg)
        return
    if dataset is not None and data_file is not None:
        raise AdarecError("give --dataset or --data-file, not both")
    if run_name is not None:
        check_run_name(run_name)
    if config is not None:
        read_text_file(config, "config file")  # a clear error for binary or UTF-16 files
    overrides = list(set_ or [])
    named = {
        "data.dataset": dataset, "data.data_dir": data_dir, "train.max_epochs": max_epochs,
        "train.max_minutes": max_minutes,
        "data.shorten_seq_to": shorten_seq_to, "train.seed": seed, "runtime.device": device,
        "output_dir": output_dir,
    }
    if data_file is not None:
        named.update({"data.dataset": "file", "data.data_file": data_file})
    cfg = load_config(preset, config, overrides)
    cfg = _apply_named(cfg, named)
    # Absolute data paths, so the run can be evaluated from any directory.
    cfg = _apply_named(cfg, {"data.data_file": absolute(cfg.data.data_file),
                             "data.data_dir": absolute(cfg.data.data_dir)})
    restarted = _elastic_restart(cfg, run_name)
    if restarted is not None:  # torchrun restarted the job: go on from the run's last.pt
        cfg = resume_config(restarted, finished_ok=True)
        if not resumable(restarted, cfg):  # a worker died after the results were written
            import json

            results = json.loads((restarted / "results.json").read_text())
            _report_run(restarted, results, cfg)
            return
        run_dir, results = fit(cfg, progress=progress, command=_command_line(),
                               resume=restarted)
    else:
        run_dir, results = fit(cfg, run_name=run_name, progress=progress,
                               command=_command_line())
    _report_run(run_dir, results, cfg)


def _elastic_restart(cfg, run_name: str | None) -> Path | None:
    """Under ``torchrun --max-restarts N`` (N > 0), the run directory a restarted job resumes
    (docs/distributed.md#a-lost-worker): torchrun restarts every process with the same
    command after one dies, and each then goes on from ``<output_dir>/<run_name>/last.pt``.
    So such a job needs ``--run-name``, and its first attempt a name not yet taken.
    None: not a restart (or nothing saved yet: the restart starts the run afresh)."""
    import os

    max_restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    if max_restarts <= 0:
        return None
    if run_name is None:
        raise AdarecError("under torchrun --max-restarts, give --run-name: a restarted job "
                          "resumes the run of that name from its last.pt")
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
        # torchrun then shares its rendezvous store with the process group, and a restarted
        # group reads the dead group's addresses: pytorch/pytorch#135712.
        raise AdarecError("torchrun --max-restarts needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
                          "in torchrun's environment, or a restarted group cannot connect")
    run_dir = Path(cfg.output_dir) / run_name
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) == 0:
        # Rank 0 alone checks: it makes the directory, maybe before another rank looks.
        if os.environ.get("RANK", "0") == "0" and run_dir.exists():
            raise AdarecError(f"{run_dir} exists; under torchrun --max-restarts give a new "
                              f"--run-name (or continue that run with --resume {run_dir})")
        return None
    return run_dir if (run_dir / "last.pt").is_file() else None


def _report_run(run_dir: Path, results: dict, cfg) -> None:
    """What `train` prints after a run: its folder, stop, test metrics, how to go on (under
    torchrun, rank 0 alone prints)."""
    from adarec.distributed import launched
    from adarec.resume import resume_command

    if launched().rank != 0:
        return
    typer.echo(f"run directory: {run_dir}")
    stops = results["stop_reason"]
    stops = ", ".join(stops) if isinstance(stops, list) else stops
    typer.echo(f"best epoch {results['best_epoch']} ({results['epochs_run']} epochs run, "
               f"stopped by {stops}); "
               f"test ({results['test']['all']['users']} users, history_mask="
               f"{cfg.train.history_mask}):")
    typer.echo(_metrics_table({"model": results["test"]["all"],
                               "popularity": results["popularity_test"]["all"]}))
    typer.echo(f"results: {run_dir / 'results.json'}")
    if "time_limit" in stops:
        typer.echo(f"stopped by the time limit; to train on: {resume_command(run_dir)} "
                   f"--max-minutes M (M > {cfg.train.max_minutes})")


def _apply_named(cfg, named: dict[str, object]):
    """Apply the named command-line options that were given, re-validating once."""
    from adarec.config import config_from_dict

    data = cfg.to_dict()
    for key, value in named.items():
        if value is None:
            continue
        value = str(value) if isinstance(value, Path) else value
        if "." in key:
            section, name = key.split(".")
            data[section][name] = value
        else:
            data[key] = value
    return config_from_dict(data)


@app.command()
def reproduce(
    preset: Annotated[list[str], Opt("--preset", help="Preset to run (repeatable).")],
    seeds: Annotated[list[int] | None, Opt("--seed", help="Seed (repeatable; default 1).")] = None,
    tag: Annotated[str | None, Opt(help="Suffix of the run names (default with "
                                   "--shorten-seq-to K: shortK).")] = None,
    shorten_seq_to: Annotated[int | None, Opt(help="Sparse protocol: keep last K.")] = None,
    data_dir: Annotated[Path | None, Opt(help="Directory holding benchmark files.")] = None,
    device: Annotated[str | None, Opt(help="auto, cpu or cuda.")] = None,
    max_minutes: Annotated[float | None, Opt(help="Time limit per run (training).")] = None,
    results_dir: Annotated[Path, Opt(help="Results root: <dir>/<dataset>/.")] = Path("results"),
    runs_dir: Annotated[Path, Opt(help="Where the run directories go.")] = Path("runs"),
    set_: Annotated[list[str] | None, Opt("--set", help="Override: section.key=value.")] = None,
    force: Annotated[bool, Opt(help="Run again even if the results file exists.")] = False,
    progress: Annotated[bool, Opt(help="Show progress bars.")] = True,
) -> None:
    """Train presets to early stopping per seed, beside the paper's numbers.

    Writes each run's results to results/<dataset>/ and the table to its README.md."""
    from adarec.inputs import absolute
    from adarec.reproduce import reproduce as run_all

    _one_process("reproduce")
    overrides = list(set_ or [])
    named = {"data.shorten_seq_to": shorten_seq_to, "data.data_dir": absolute(data_dir),
             "runtime.device": device, "train.max_minutes": max_minutes}
    overrides += [f"{k}={v}" for k, v in named.items() if v is not None]
    folders = run_all(preset, seeds or [1], overrides=overrides, tag=tag,
                      results_root=results_dir, runs_dir=runs_dir, force=force,
                      command=_command_line(), progress=progress, echo=typer.echo)
    for folder in folders:
        typer.echo(f"table: {folder / 'README.md'}")


@app.command(name="evaluate")
def evaluate_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory or a checkpoint file.")],
    split: Annotated[str, Opt(help="valid or test.")] = "test",
    shorten_seq_to: Annotated[int | None, Opt(help="Sparse protocol: keep last K.")] = None,
    history_mask: Annotated[str | None, Opt(help="inf or zero (release).")] = None,
    ties: Annotated[str, Opt(help="Equal scores: conservative (the answer ranks after all "
                             "of them) or by_id (smaller item id first, as before).")
                    ] = "conservative",
    data_dir: Annotated[Path | None, Opt(help="Directory holding benchmark files.")] = None,
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Evaluate a trained model on the validation or test split (full ranking)."""
    from adarec.checkpoint import load_checkpoint, model_from_checkpoint
    from adarec.evaluate import HISTORY_MASKS, TIES, evaluate
    from adarec.inputs import check_choice, is_incomplete
    from adarec.setup import eval_batch_size, evaluation_split, resolve_device

    check_choice("--history-mask", history_mask, HISTORY_MASKS)
    check_choice("--ties", ties, TIES)
    dev = resolve_device(device)
    path = run / "best.pt" if run.is_dir() else run
    if is_incomplete(path.parent):
        typer.echo(f"warning: the run in {path.parent} did not finish; evaluating its best "
                   "checkpoint so far", err=True)
    model, cfg, info = model_from_checkpoint(load_checkpoint(path))
    ev = evaluation_split(cfg, info, split, data_dir=str(data_dir) if data_dir else None,
                          shorten_seq_to=shorten_seq_to)
    k = shorten_seq_to if shorten_seq_to is not None else cfg.data.shorten_seq_to
    model.to(dev).eval()
    mask = history_mask or cfg.train.history_mask
    result = evaluate(model.score, ev.to(dev), info.n_items, history_mask=mask, ties=ties,
                      batch_size=eval_batch_size(cfg.runtime, dev, info.n_items))
    typer.echo(f"{path}: {split} split, {result['all']['users']} users, history_mask={mask}"
               + (f", shorten_seq_to={k}" if k else "") + f", ties={ties}")
    typer.echo(_metrics_table({b: m for b, m in result.items()}))


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="A run directory or a checkpoint file.")],
    histories: Annotated[Path, typer.Argument(help="Sequence file: user item item ...")],
    k: Annotated[int, Opt(help="How many items per user.")] = 10,
    output: Annotated[Path | None, Opt(help="Write TSV here instead of stdout.")] = None,
    include_history: Annotated[bool, Opt(help="Allow items the user already had.")] = False,
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Top-k next items for each user of a sequence file (TSV: user, rank, item, score)."""
    from adarec.checkpoint import load_checkpoint, model_from_checkpoint
    from adarec.data.reader import read_sequences
    from adarec.inputs import check_output_file
    from adarec.recommend import recommend as top_k
    from adarec.recommend import shortfall
    from adarec.setup import resolve_device

    if k < 1:
        raise AdarecError(f"--k must be >= 1; got {k}")
    dev = resolve_device(device)
    path = run / "best.pt" if run.is_dir() else run
    if output is not None:
        check_output_file(output, option="--output", inputs=[histories, path])
    model, _, info = model_from_checkpoint(load_checkpoint(path))
    model.to(dev)
    seqs = read_sequences(histories)
    k = min(k, info.n_items)  # no more than every item the model knows
    items, scores = top_k(model, seqs, k=k, n_items=info.n_items, max_len=info.max_len,
                          exclude_history=not include_history)
    lines = ["user\trank\titem\tscore"]
    for user, row, vals in zip(seqs.user_ids.tolist(), items.tolist(), scores.tolist(),
                               strict=True):
        lines += [f"{user}\t{r}\t{i}\t{v:.6g}" for r, (i, v) in enumerate(zip(row, vals,
                  strict=True), start=1) if v != float("-inf")]
    text = "\n".join(lines) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}: {len(seqs)} users x top {k}{shortfall(scores, k)}")


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(help="A run directory or a checkpoint file.")],
    host: Annotated[str, Opt(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port to listen on.")] = 8000,
    engine: Annotated[str, Opt(help="torch or onnxruntime.")] = "torch",
    onnx: Annotated[Path | None, Opt(help="onnxruntime: this `adarec export` file (default: "
                                     "export at startup).")] = None,
    device: Annotated[str, Opt(help="auto, cpu or cuda (torch engine).")] = "cpu",
    threads: Annotated[int, Opt(help="Intra-op threads of the engine.")] = 1,
    item_map: Annotated[Path | None, Opt(help="Original ids from this item map TSV.")] = None,
    model_ids: Annotated[bool, Opt(help="Use the model's ids even if an item map is found.")]
    = False,
    max_batch: Annotated[int, Opt(help="Most histories per batch request and per pass.")] = 256,
    max_body_bytes: Annotated[int, Opt(help="Longest request body.")] = 1 << 20,
    gather: Annotated[bool, Opt(help="Score concurrent requests together.")] = True,
    wait_ms: Annotated[float, Opt(help="With --gather: wait this long for company.")] = 0.0,
    max_queue: Annotated[int, Opt(help="Most recommendation requests in flight; beyond, "
                                  "503 with Retry-After at once (0: no limit).")] = 32,
    retry_after_s: Annotated[int, Opt(help="Retry-After of a 503, seconds.")] = 1,
    access_log: Annotated[bool, Opt(help="Log every request.")] = False,
    keep_alive_s: Annotated[int, Opt(help="Close idle connections after this long.")] = 30,
) -> None:
    """Serve top-k recommendations over HTTP (docs/serving.md); needs the serve extra."""
    try:
        import uvicorn

        from adarec.serve.app import Limits, create_app
    except ImportError as exc:
        raise AdarecError(f"serving needs the serve extra: pip install 'adarec[serve]' "
                          f"({exc})") from None
    from adarec.serve.loading import load_recommender

    if max_batch < 1 or max_body_bytes < 1 or wait_ms < 0:
        raise AdarecError("--max-batch and --max-body-bytes must be >= 1, --wait-ms >= 0")
    if max_queue < 0 or retry_after_s < 0:
        raise AdarecError("--max-queue and --retry-after-s must be >= 0")
    rec = load_recommender(run, engine=engine, device=device, threads=threads,
                           item_map=item_map, model_ids=model_ids, onnx=onnx)
    limits = Limits(max_body_bytes=max_body_bytes, max_batch=max_batch, gather=gather,
                    wait_ms=wait_ms, max_queue=max_queue, retry_after_s=retry_after_s)
    meta = rec.metadata
    typer.echo(f"serving {meta['checkpoint']} ({meta['model']}, {meta['n_items']} items, "
               f"{meta['item_ids']} ids, engine {meta['engine']}) on http://{host}:{port}")
    uvicorn.run(create_app(rec, limits), host=host, port=port, access_log=access_log,
                log_level="info", timeout_keep_alive=keep_alive_s)


@app.command(name="export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory or a checkpoint file.")],
    output: Annotated[Path, Opt(help="ONNX file to write.")],
    format_: Annotated[str, Opt("--format", help="Export format: onnx.")] = "onnx",
) -> None:
    """Write the scoring graph: history (B, max_len) int64 -> scores (B, n_items + 1)."""
    from adarec.checkpoint import load_checkpoint, model_from_checkpoint
    from adarec.export import export_onnx
    from adarec.inputs import check_output_file

    if format_ != "onnx":
        raise AdarecError(f"--format must be onnx, got {format_!r}")
    check_output_file(output, option="--output")
    path = run / "best.pt" if run.is_dir() else run
    model, _, info = model_from_checkpoint(load_checkpoint(path))
    size = export_onnx(model, output, n_items=info.n_items, max_len=info.max_len)
    typer.echo(f"wrote {output}: {size:,} bytes; input history int64 [batch, {info.max_len}], "
               f"output scores float32 [batch, {info.n_items + 1}]")


@app.command()
def report(
    paths: Annotated[list[Path], typer.Argument(help="Run directories, results files or "
                                                 "folders of them.")],
    output: Annotated[Path, Opt(help="Folder for report.md and the figures.")],
    baseline: Annotated[str | None, Opt(help="Baseline group (e.g. sasrec-beauty) or preset; "
                                        "default: the SASRec runs.")] = None,
    bootstrap: Annotated[int, Opt(help="Bootstrap resamples per interval.")] = 2000,
    replay: Annotated[bool, Opt(help="Run the final pass from best.pt for run directories "
                                "without stored outcomes.")] = True,
    data_dir: Annotated[Path | None, Opt(help="Benchmark files, for --replay.")] = None,
    device: Annotated[str, Opt(help="auto, cpu or cuda, for --replay.")] = "auto",
) -> None:
    """Tables over seeds, paired tests against a baseline, collapse measures and figures."""
    from adarec.report.write import build_report

    if bootstrap < 100:
        raise AdarecError(f"--bootstrap must be >= 100, got {bootstrap}")
    path = build_report(paths, output, baseline=baseline, n_resamples=bootstrap,
                        replay_checkpoints=replay, data_dir=data_dir, device=device)
    figures = sorted(p.name for p in output.glob("*.png"))
    typer.echo(f"wrote {path} and {len(figures)} figures: {', '.join(figures)}")


@app.command()
def sweep(
    preset: Annotated[str, Opt(help="Preset to tune.")],
    space: Annotated[Path, Opt(help="Search space YAML (see docs/reports.md).")],
    trials: Annotated[int, Opt(help="Finished trials the study should hold.")] = 20,
    storage: Annotated[str, Opt(help="Optuna storage URL, shared by workers.")] =
        "sqlite:///sweep.db",
    study: Annotated[str | None, Opt(help="Study name (default: the preset).")] = None,
    output: Annotated[Path | None, Opt(help="Best config YAML (default: "
                                       "<study>-best.yaml).")] = None,
    runs_dir: Annotated[Path, Opt(help="Where the trials' run directories go.")] =
        Path("runs/sweeps"),
    sampler_seed: Annotated[int | None, Opt(help="Seed of the TPE sampler.")] = None,
    set_: Annotated[list[str] | None, Opt("--set", help="Override: section.key=value.")] = None,
) -> None:
    """Optuna search over a preset; writes the best configuration as YAML.

    Selects on validation NDCG@20, prunes on its per-epoch curve, resumes from the storage."""
    from adarec.sweep import read_space
    from adarec.sweep import sweep as run_sweep

    _one_process("sweep")
    name = study or preset
    result = run_sweep(preset, read_space(space), trials=trials, storage=storage,
                       study_name=name, overrides=list(set_ or []), runs_dir=runs_dir / name,
                       best_path=output or Path(f"{name}-best.yaml"),
                       sampler_seed=sampler_seed, echo=typer.echo)
    typer.echo(f"best: trial {result['best_trial']}, validation NDCG@20 "
               f"{result['best_value']:.4f}, {result['params']} ({result['finished']} trials "
               f"finished); config: {result['best_config']}")


@app.command()
def presets() -> None:
    """List the shipped presets."""
    from adarec.config import preset_names

    typer.echo("\n".join(preset_names()))


@data_app.command("list")
def data_list() -> None:
    """List the registered benchmark datasets and where each would be read from."""
    from adarec.data.registry import DATASETS, dataset_path

    rows = [("name", "users", "items", "interactions", "local copy")]
    for info in DATASETS.values():
        try:
            where = str(dataset_path(info.name, download=False))
        except AdarecError:
            where = "- (downloaded on first use)"
        rows.append((info.name, f"{info.users:,}", f"{info.items:,}",
                     f"{info.interactions:,}", where))
    typer.echo(_table(rows))
    typer.echo("(plus 'synthetic': generated on the fly, no file)")


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="Benchmark name, e.g. Beauty.")],
    base_url: Annotated[str | None, Opt(help="Mirror to download from.")] = None,
    force: Annotated[bool, Opt(help="Download again even if cached.")] = False,
) -> None:
    """Download a benchmark into the cache and verify its SHA-256."""
    from adarec.data.registry import download

    typer.echo(f"ok: {download(name, base_url=base_url, force=force)}")


@data_app.command("stats")
def data_stats(
    name: Annotated[str, typer.Argument(help="Benchmark name, 'synthetic' or a file path.")],
    data_dir: Annotated[Path | None, Opt(help="Directory holding benchmark files.")] = None,
) -> None:
    """Users, items, interactions and the length distribution of a dataset."""
    from adarec.data.load import load_sequences
    from adarec.data.stats import describe

    if name == "synthetic":
        seqs = load_sequences("synthetic")
    elif Path(name).is_file():
        seqs = load_sequences("file", data_file=name)
    else:
        seqs = load_sequences(name, data_dir=str(data_dir) if data_dir else None)
    typer.echo(f"{seqs.source}")
    typer.echo(json.dumps(describe(seqs), indent=2))


@data_app.command("import")
def data_import(
    log: Annotated[Path, typer.Argument(help="CSV, TSV or Parquet interaction log.")],
    out: Annotated[Path, typer.Argument(help="Sequence file to write.")],
    user_col: Annotated[str, Opt(help="User column.")] = "user",
    item_col: Annotated[str, Opt(help="Item column.")] = "item",
    time_col: Annotated[str, Opt(help="Timestamp column.")] = "timestamp",
    sep: Annotated[str | None, Opt(help="Field separator (default from the suffix).")] = None,
    dedup: Annotated[str, Opt(help="Repeated user-item pairs: first, last or none.")] = "first",
    k_core: Annotated[int, Opt(help="Iterative k-core filter on users and items.")] = 5,
) -> None:
    """Turn an interaction log into a sequence file (k-core, chronological, ids from 1)."""
    from adarec.data.importer import import_log

    report = import_log(log, out, user_col=user_col, item_col=item_col, time_col=time_col,
                        sep=sep, dedup=dedup, k_core=k_core)
    typer.echo(f"wrote {out}: {report}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)  # returns an exit code after --help and the like
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()  # `adarec` or `adarec data` alone: the help text
        sys.exit(2)
    except click_errors.UsageError as exc:  # unknown option, bad value: one line, not a box
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        typer.echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except AdarecError as exc:
        message = " ".join(str(exc).split())  # one line, even if a library's text had more
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        typer.echo(f"interrupted: {exc}" if str(exc) else "interrupted", err=True)
        sys.exit(130)
    except (MemoryError, OverflowError) as exc:  # a size or number too large to work with
        typer.echo(f"error: a setting or input is too large ({type(exc).__name__}: "
                   f"{' '.join(str(exc).split())})", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)

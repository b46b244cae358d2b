"""The training loop: train one epoch, validate, early-stop, test once on the best checkpoint.

Batches are cut from tensors already on the model's device; losses are accumulated on the
device and read once per epoch, so the loop makes no host-device round trip per step.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from adarec import distributed
from adarec.checkpoint import load_checkpoint, save_checkpoint
from adarec.config import RunConfig, TrainConfig, save_config
from adarec.data.load import DataInfo
from adarec.data.negatives import sample_negatives
from adarec.data.splits import EvalSplit, TrainSplit, trim_left
from adarec.divergence import Diverged, FiniteWatch, NonFiniteLoss, weights_finite
from adarec.errors import AdarecError
from adarec.evaluate import (
    evaluate,
    item_counts,
    popularity_score_fn,
    sharded_rank_masks,
    summaries,
)
from adarec.inputs import make_run_dir, mark_complete
from adarec.model.interface import Batch, Stage
from adarec.model.losses import LossOutput
from adarec.outcomes import FILE_NAME as OUTCOMES_FILE
from adarec.outcomes import outcomes_of, save_outcomes
from adarec.probe import final_pass
from adarec.resume import (
    LAST,
    Progress,
    check_resume_data,
    load_last,
    read_sessions,
    record_session,
    remove_stale_temporaries,
    reopens,
    resume_command,
    rewrite_lines,
    save_last,
)
from adarec.setup import Run, eval_batch_size, make_optimizer, setup_run
from adarec.state import capture_rank_rng, restore_rank_rng

SELECT_METRIC = "NDCG@20"


LossFn = Callable[[Batch], LossOutput]


# TorchDynamo settings for compiled losses: trace nn.GRU too (the depth controllers'), so a
# whole training step is one graph and CUDA graphs (``compile_mode=reduce-overhead``) can
# capture it whole; `tests/test_compile.py` checks that every model's loss is one graph.
DYNAMO_CONFIG = {"allow_rnn": True}


def loss_function(model: nn.Module, *, compile: bool = False, mode: str = "default") -> LossFn:
    """``model.loss`` (under torchrun, through DistributedDataParallel:
    `adarec.distributed.loss_step`), or a compiled version of it (``torch.compile``
    ``mode``) that falls back to eager on failure."""
    step = distributed.loss_step(model)
    if not compile:
        return step
    compiled = torch.compile(step, mode=mode)
    state = {"fn": compiled}

    def call(batch: Batch) -> LossOutput:
        if state["fn"] is compiled:
            try:
                with torch._dynamo.config.patch(**DYNAMO_CONFIG):
                    # A new training step: CUDA graphs may reuse the last step's outputs.
                    torch.compiler.cudagraph_mark_step_begin()
                    return compiled(batch)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means "run eager"
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); "
                              "training continues in eager mode", stacklevel=2)
                state["fn"] = step
        return state["fn"](batch)

    return call


def batch_rows(
    n_rows: int, batch_size: int, generator: torch.Generator, *,
    lengths: torch.Tensor | None = None, pool: int = 50,
) -> list[torch.Tensor]:
    """An epoch's batches of row indices, in random order.

    Without ``lengths``: a random permutation cut into batches. With ``lengths`` (rows' real
    lengths), each random pool of ``pool`` batches is sorted by length before it is cut, and
    the batches are then shuffled, so a batch holds rows of similar length and its padding
    columns can be dropped: on Beauty 7.6x fewer padded positions than random batches.
    """
    device = generator.device
    order = torch.randperm(n_rows, generator=generator, device=device)
    if lengths is None:
        return list(order.split(batch_size))
    batches: list[torch.Tensor] = []
    for chunk in order.split(batch_size * pool):
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches.extend(chunk.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator, device=device).tolist()
    return [batches[i] for i in shuffle]


def negatives_high(config: RunConfig, info: DataInfo) -> int | None:
    """The release's data path draws each epoch's negatives from 1..n_items + 1 outside the
    user's whole sequence (docs/release.md): the bound to draw below, or None where the
    loss draws its own."""
    return info.n_items + 2 if config.model.name == "release" else None


def make_batch(
    train: TrainSplit, rows: torch.Tensor, negatives: torch.Tensor | None = None,
    trim: bool = False, world: distributed.World | None = None,
) -> Batch:
    """The training `Batch` of ``rows``; ``trim`` drops its all-padding columns (CPU).

    Under torchrun (``world`` of several processes) ``rows`` is the global batch and the
    `Batch` holds this process's contiguous share of it (`adarec.distributed.shard_bounds`),
    cut to the width of the global batch, so that all processes' rows line up."""
    width = None
    if world is not None and world.size > 1:
        if trim:
            width = trim_left(train.inputs[rows])[0].shape[1]
        lo, hi = distributed.shard_bounds(len(rows), world)
        rows, trim = rows[lo:hi], False
    inputs, targets = train.inputs[rows], train.targets[rows]
    aligned = () if negatives is None else (negatives[rows],)
    if width is not None:
        inputs, targets, *aligned = (x[:, -width:] for x in (inputs, targets, *aligned))
    if trim:
        inputs, targets, *aligned = trim_left(inputs, targets, *aligned)
    lengths = None if train.lengths is None else train.lengths[rows]
    return Batch(inputs, targets, lengths, *aligned)


def train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, train: TrainSplit, *,
    batch_size: int, generator: torch.Generator, progress: bool = False,
    autocast: torch.dtype | None = None, loss_fn: LossFn | None = None,
    by_length: bool = False, negatives_high: int | None = None,
) -> dict[str, float]:
    """One pass over the training rows in random order; returns the mean of each loss part.

    On the CPU each batch drops its all-padding columns first (positions count from the
    right, so nothing changes but the cost; the models then run rows in length groups, see
    `adarec.model.encoder.length_groups`), and ``by_length`` batches rows of similar length
    (see `batch_rows`). On a GPU trimming would cost a sync per step, so the loop there never
    waits for the device: losses are summed on it and read once. ``autocast`` runs the
    forward pass and losses in that dtype (bf16 on a GPU by default); ``loss_fn`` replaces
    ``model.loss`` (e.g. by a compiled version). With ``negatives_high`` the epoch's
    negatives are drawn first, outside each user's whole sequence (`negatives_high`).

    Under torchrun every process draws the same global batches and negatives (``generator``
    is seeded alike everywhere), trains on its share of each batch (`make_batch`) and
    skips a last batch of fewer rows than processes; the returned means are the
    processes' averages, i.e. the global batch's losses (docs/distributed.md).
    """
    model.train()
    device = train.inputs.device
    trim = device.type == "cpu"
    loss_fn = loss_fn or model.loss
    world = distributed.world()
    lengths = (train.inputs > 0).sum(1) if by_length else None
    batches = batch_rows(len(train), batch_size, generator, lengths=lengths)
    if world.size > 1:
        batches = [rows for rows in batches if len(rows) >= world.size]
    negatives = (None if negatives_high is None else
                 sample_negatives(train.seen, train.users, train.targets, negatives_high,
                                  generator))
    sums: dict[str, torch.Tensor] = {}
    watch = FiniteWatch(device)  # a NaN/inf loss raises NonFiniteLoss (docs/resume.md)
    for step, rows in enumerate(tqdm(batches, desc="train", leave=False, disable=not progress),
                                start=1):
        batch = make_batch(train, rows, negatives, trim, world)
        with torch.autocast(device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            out = loss_fn(batch)
        watch.update(step, out.total)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()
        for name, value in {"total": out.total.detach(), **out.parts, **out.stats}.items():
            sums[name] = sums.get(name, 0) + value.detach().float()
    watch.check()
    if world.size > 1:  # the processes' average: the global batch's values
        sums = dict(zip(sums, distributed.sum_tensor(torch.stack(list(sums.values())))
                        / world.size, strict=True))
    return {name: float(value) / len(batches) for name, value in sums.items()}


@dataclass
class EpochLog:
    epoch: int
    losses: dict[str, float]
    valid: dict[str, dict[str, float]]
    train_seconds: float
    valid_seconds: float


def commit_id() -> str | None:
    """``$ADAREC_COMMIT`` if set (for copies whose git metadata is stale or absent), else
    the checkout's short HEAD, with ``+dirty`` when tracked files differ from it."""
    if os.environ.get("ADAREC_COMMIT"):
        return os.environ["ADAREC_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, timeout=5, cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    head = out.stdout.strip()
    if not head or out.returncode:
        return None
    return head + ("+dirty" if dirty.stdout.strip() else "")


def new_run_dir(config: RunConfig, name: str | None = None) -> Path:
    """A fresh directory under ``output_dir``; an existing run is never overwritten."""
    base = name or f"{config.preset}-{config.data.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return make_run_dir(config.output_dir, base)  # marked INCOMPLETE until results.json


EpochHook = Callable[[EpochLog], None]


@dataclass
class Stopped:
    """How one model's early-stopped training went: ``reason`` is ``patience``,
    ``max_epochs`` or ``time_limit``."""

    best_epoch: int
    logs: list[EpochLog]
    reason: str


def train_to_early_stop(
    stage: Stage, *, run: Run, run_dir: Path, writer: Any, log_file: Any, progress: bool,
    budget: float | None = None, index: int = 0, finished: list[Stopped] | None = None,
    start: Progress | None = None, on_epoch: EpochHook | None = None,
) -> Stopped:
    """Epoch loop: train, validate, keep the best checkpoint (of the whole ``run.model``),
    stop on patience.

    ``stage.model`` is what trains and is validated (the run's model, or one member of it),
    stage ``index`` after the ``finished`` ones; ``budget`` (seconds) stops the loop before
    an epoch that would likely end after it. Every epoch ends by writing ``last.pt``
    (`adarec.resume`); ``start`` (read from it) resumes the stage after its last completed
    epoch. ``on_epoch`` sees each epoch's log once it is written (a sweep prunes from it by
    raising). On return ``run.model`` holds the best state.
    """
    config, info, model, tag = run.config, run.info, stage.model, stage.tag
    t, r = config.train, config.runtime
    device = run.device
    train, valid = run.splits.train.to(device), run.splits.valid.to(device)
    optimizer = make_optimizer(model, t, device)
    generator = torch.Generator(device=device).manual_seed(t.seed)  # the same on all ranks
    main = distributed.is_main()
    state = begin_stage(model, train, optimizer, generator, config, index=index,
                        finished=finished, start=start)
    loss_fn = loss_function(model, compile=r.compile, mode=r.compile_mode)
    autocast = run.autocast
    by_length = t.batching == "by_length"
    logs = [EpochLog(**log) for log in state.logs]
    began = time.perf_counter() - state.elapsed

    def save_last_state() -> None:
        state.optimizer, state.rng = optimizer.state_dict(), capture_rank_rng(generator)
        state.elapsed = time.perf_counter() - began
        if main:
            save_last(run_dir, model=run.model, config=config, info=info, progress=state)

    if start is None:
        save_last_state()  # epoch 0: a kill in the first epoch resumes from here
    first = state.epoch + 1 if state.reason is None else t.max_epochs + 1
    bar = tqdm(range(first, t.max_epochs + 1), desc=f"epochs{tag}",
               disable=not (progress and main), initial=first - 1, total=t.max_epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        try:
            losses = train_epoch(model, optimizer, train, batch_size=t.batch_size,
                                 generator=generator, progress=progress and main,
                                 autocast=autocast,
                                 loss_fn=loss_fn, by_length=by_length,
                                 negatives_high=negatives_high(config, info))
        except NonFiniteLoss as bad:
            raise diverged(run_dir, f"the loss was {bad.value} at epoch {epoch}, step "
                           f"{bad.step}{tag}", state) from None
        t1 = time.perf_counter()
        if not weights_finite(model):
            raise diverged(run_dir, f"the weights became non-finite in epoch {epoch}{tag}",
                           state)
        metrics = validate(model, valid, config, info, device)
        t2 = time.perf_counter()
        log = EpochLog(epoch, losses, metrics, t1 - t0, t2 - t1)
        logs.append(log)
        record_epoch(log, tag=tag, log_file=log_file, writer=writer)
        if on_epoch is not None:
            on_epoch(log)
        score = metrics["all"][SELECT_METRIC]
        if score > state.best:  # the same metrics, so the same decision, on every rank
            state.best, state.best_epoch = score, epoch
            if main:
                save_checkpoint(run_dir / "best.pt", model=run.model, config=config,
                                info=info, epoch=epoch, metrics=metrics, extra={"stage": index})
        bar.set_postfix(loss=f"{losses['total']:.4f}", ndcg20=f"{score:.4f}",
                        best=f"{state.best:.4f}@{state.best_epoch}")
        state.epoch, state.logs = epoch, [asdict(x) for x in logs]
        over = budget is not None and time.perf_counter() + (t2 - t0) > began + budget
        # Rank 0's clock decides the time limit for all.
        state.reason = distributed.broadcast_object(stop_reason(state, t, over_budget=over))
        save_last_state()
        if state.reason is not None:
            break
    distributed.from_main(lambda: load_best(run, run_dir, state.best_epoch, index))
    distributed.broadcast_module(run.model)  # rank 0's best weights on every rank
    return Stopped(state.best_epoch, logs, state.reason or "max_epochs")


def begin_stage(
    model: nn.Module, train: TrainSplit, optimizer: torch.optim.Optimizer,
    generator: torch.Generator, config: RunConfig, *, index: int,
    finished: list[Stopped] | None, start: Progress | None,
) -> Progress:
    """The `Progress` a stage starts from: a fresh one after the model's set-up (k-means;
    under torchrun each process encodes its share and rank 0 clusters them all), or
    ``start`` from ``last.pt`` with the optimizer and random states restored (the weights
    were loaded by `fit`). A stopped stage that ``config`` lets go on is reopened."""
    t = config.train
    if start is None:
        model.before_training(distributed.shard(train.inputs), t.seed)
        state = Progress(stage=index, finished=[asdict(s) for s in finished or []])
    else:
        state = start
        optimizer.load_state_dict(state.optimizer)
        restore_rank_rng(state.rng, generator, t.seed)
    if start is None or reopens(state, config):
        state.reason, state.max_minutes = None, t.max_minutes
    return state


def validate(model: nn.Module, valid: EvalSplit, config: RunConfig, info: DataInfo,
             device: torch.device) -> dict[str, dict[str, float]]:
    """The validation metrics of ``model`` under the configured history mask (under torchrun
    each process ranks its share of the users, and all get every rank)."""
    model.eval()
    mask = config.train.history_mask
    ranks = sharded_rank_masks(model.score, valid, info.n_items, history_masks=(mask,),
                               batch_size=eval_batch_size(config.runtime, device, info.n_items))
    return summaries(ranks[mask], valid)


def record_epoch(log: EpochLog, *, tag: str, log_file: Any, writer: Any) -> None:
    """One line of ``metrics.jsonl`` and the TensorBoard scalars for an epoch."""
    log_file.write(json.dumps({**asdict(log), **({"member": tag} if tag else {})}) + "\n")
    log_file.flush()
    for name, value in log.losses.items():
        writer.add_scalar(f"loss{tag}/{name}", value, log.epoch)
    for name, value in log.valid["all"].items():
        writer.add_scalar(f"valid{tag}/{name}", value, log.epoch)


def stop_reason(state: Progress, t: TrainConfig, *, over_budget: bool) -> str | None:
    """Why training stops after ``state.epoch`` (``None``: it goes on): patience first, then
    a time budget the next epoch would likely overrun, then ``max_epochs``."""
    if state.epoch - state.best_epoch >= t.patience:
        return "patience"
    if over_budget:
        return "time_limit" if state.epoch < t.max_epochs else "max_epochs"
    return "max_epochs" if state.epoch == t.max_epochs else None


def load_best(run: Run, run_dir: Path, best_epoch: int, index: int) -> None:
    """Load ``run_dir/best.pt`` into ``run.model``, checking that it holds ``best_epoch``
    of stage ``index``."""
    best = load_checkpoint(run_dir / "best.pt")
    if (best["epoch"], best.get("stage", index)) != (best_epoch, index):
        raise AdarecError(f"{run_dir / 'best.pt'} holds epoch {best['epoch']}, not the best "
                          f"epoch {best_epoch}: it was written by an epoch that the "
                          "resumed run did not repeat; train this run again")
    run.model.load_state_dict(best["state_dict"])


def diverged(run_dir: Path, what: str, state: Progress) -> Diverged:
    """The error that ends a diverged run: what went wrong, and what was kept."""
    kept = f"{run_dir / LAST} (epoch {state.epoch}) is the last good checkpoint"
    if state.best_epoch:
        kept += f", best.pt holds epoch {state.best_epoch}"
    return Diverged(f"training diverged: {what}; nothing of that epoch was saved: {kept}")


def train_stages(
    run: Run, *, run_dir: Path, progress: bool, start: Progress | None,
    on_epoch: EpochHook | None = None,
) -> list[Stopped]:
    """Train each of the model's `stages` (itself, or each member of the release's
    ensemble) to early stopping, one after the other, from ``start`` (``last.pt``) when
    resuming.

    ``metrics.jsonl`` is rewritten first with the completed epochs ``start`` knows (a line
    written after its ``last.pt`` would be repeated), and TensorBoard purges its later
    steps; each stage logs under ``tb/`` (members: ``tb/member<i>/``).
    """
    from torch.utils.tensorboard import SummaryWriter  # slow import, only when training

    stages = run.model.stages()
    stops = [] if start is None else [
        Stopped(s["best_epoch"], [EpochLog(**x) for x in s["logs"]], s["reason"])
        for s in start.finished]
    done = [(stages[i].tag, asdict(log)) for i, s in enumerate(stops) for log in s.logs]
    done += [] if start is None else [(stages[start.stage].tag, log) for log in start.logs]
    main = distributed.is_main()  # under torchrun, only rank 0 writes the logs
    if main:
        rewrite_lines(run_dir / "metrics.jsonl",
                      [{**log, **({"member": tag} if tag else {})} for tag, log in done])
    minutes = run.config.train.max_minutes
    share = None if minutes is None else 60.0 * minutes / len(stages)
    with open(run_dir / "metrics.jsonl" if main else os.devnull, "a") as log_file:
        for i in range(len(stops), len(stages)):
            resumed = start if start is not None and start.stage == i else None
            writer = (SummaryWriter(str(run_dir / "tb" / stages[i].tag.strip("/")),
                                    purge_step=None if resumed is None else resumed.epoch + 1)
                      if main else NoWriter())
            try:
                stops.append(train_to_early_stop(
                    stages[i], run=run, run_dir=run_dir, writer=writer, log_file=log_file,
                    progress=progress, budget=share, index=i, finished=stops, start=resumed,
                    on_epoch=on_epoch))
            finally:
                writer.close()
    return stops


class NoWriter:
    """A TensorBoard writer that writes nothing (the ranks other than 0)."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says how to resume."""


def interrupted(run_dir: Path, config: RunConfig, info: DataInfo,
                command: str | None) -> RunInterrupted:
    """Write ``results.json`` with ``stop_reason: interrupted`` and say how to resume."""
    try:
        _, state = load_last(run_dir)
    except AdarecError:
        state = None
    results = {
        "config": config.to_dict(), "data": asdict(info), "stop_reason": "interrupted",
        "resume_from": None if state is None else {"stage": state.stage, "epoch": state.epoch},
        "resume_command": None if state is None else resume_command(run_dir),
        "commit": commit_id(), "command": command,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    if state is None:
        return RunInterrupted(f"{run_dir}: stopped before its first checkpoint; run it again")
    where = f"epoch {state.epoch}" + (f" of member {state.stage}" if state.stage else "")
    return RunInterrupted(f"{run_dir} keeps {LAST} at {where}; resume with: "
                          f"{resume_command(run_dir)}")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def fit(
    config: RunConfig, *, run_name: str | None = None, progress: bool = True,
    command: str | None = None, resume: Path | None = None,
    on_epoch: EpochHook | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train ``config`` to early stopping, test the best checkpoint once, write the run.

    The run directory is created only once the data has loaded and the model is built.
    Each of the model's `stages` (the model itself, or the release ensemble's members)
    trains on its own, with its own optimiser and early stopping; the whole model is tested.
    ``resume`` (a run directory; ``config`` from `adarec.resume.resume_config`) continues
    that run from its ``last.pt``. Ctrl-C raises `RunInterrupted` once ``results.json``
    says so. ``on_epoch`` is called with every epoch's log (see `train_to_early_stop`).
    Returns the run directory and the results.

    Under torchrun (docs/distributed.md) every process trains its share of each batch;
    rank 0 alone names and writes the run directory, and the others return the same
    directory with the same test metrics (without the final pass's measures).
    """
    run = setup_run(config)  # joins torchrun's process group, if launched by it
    try:
        return _fit(run, run_name=run_name, progress=progress, command=command,
                    resume=resume, on_epoch=on_epoch)
    finally:
        distributed.stop()


def _fit(
    run: Run, *, run_name: str | None, progress: bool, command: str | None,
    resume: Path | None, on_epoch: EpochHook | None,
) -> tuple[Path, dict[str, Any]]:
    config = run.config
    device, splits, info, model = run.device, run.splits, run.info, run.model
    main = distributed.is_main()
    # Where this stretch runs; the commit is read now: HEAD may move before the run ends.
    here = {"commit": commit_id(), "device": _device_name(device),
            "processes": distributed.world().size, "torch": str(torch.__version__)}
    last, start = (None, None) if resume is None else load_last(resume)
    if resume is None:
        run_dir = distributed.from_main(lambda: new_run_dir(config, run_name))
    else:
        run_dir = resume
        check_resume_data(last["data_info"], info, run_dir)
        if main:
            remove_stale_temporaries(run_dir)
        model.load_state_dict(last["state_dict"])
    if main:
        save_config(config, run_dir / "config.yaml")
        record_session(run_dir, start, **here)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        stops = train_stages(run, run_dir=run_dir, progress=progress, start=start,
                             on_epoch=on_epoch)
    except KeyboardInterrupt:
        if not main:
            raise
        raise interrupted(run_dir, config, info, command) from None

    t, r = config.train, config.runtime
    test_split = splits.test.to(device)
    model.eval()
    # Both masking protocols (docs/protocol.md#history-masks): ``test`` is the configured one.
    batch = eval_batch_size(r, device, info.n_items)
    test_ranks = sharded_rank_masks(model.score, test_split, info.n_items, batch_size=batch)
    test_by_mask = {mask: summaries(ranks, test_split) for mask, ranks in test_ranks.items()}
    test = test_by_mask[t.history_mask]
    logs = [log for stop in stops for log in stop.logs]
    best_epochs = [s.best_epoch for s in stops]
    best_valid = [s.logs[s.best_epoch - 1].valid for s in stops]
    single = len(stops) == 1

    def per_model(values: list[Any]) -> Any:
        return values[0] if single else values

    results = {
        "config": config.to_dict(),
        "data": asdict(info),
        "best_epoch": per_model(best_epochs),
        "epochs_run": len(logs),
        "stop_reason": per_model([s.reason for s in stops]),
        "valid": per_model(best_valid),
        "test": test,
        "test_by_history_mask": test_by_mask,
    }
    if not main:  # rank 0 alone runs the final pass and writes the results
        distributed.barrier()
        return run_dir, results
    # Per-user outcomes and collapse measures for `adarec report` (docs/reports.md).
    probe = final_pass(model, test_split, batch_size=batch, seed=t.seed)
    save_outcomes(outcomes_of(test_split, test_ranks, probe.per_user), run_dir / OUTCOMES_FILE)
    popular = popularity_score_fn(item_counts(splits.valid, info.n_items).to(device))
    popularity = evaluate(popular, test_split, info.n_items, history_mask=t.history_mask,
                          batch_size=batch)
    results.update({
        "popularity_test": popularity,
        "analysis": probe.summary,
        "train_seconds_per_epoch": [round(x.train_seconds, 4) for x in logs],
        "valid_seconds_per_epoch": [round(x.valid_seconds, 4) for x in logs],
        "median_train_seconds": round(median(x.train_seconds for x in logs), 4),
        "median_valid_seconds": round(median(x.valid_seconds for x in logs), 4),
        "peak_gpu_memory_mib": (round(torch.cuda.max_memory_allocated(device) / 2**20)
                                if device.type == "cuda" else None),
        "device": here["device"],
        "processes": here["processes"],
        "commit": here["commit"],
        "command": command,
        "versions": {"torch": here["torch"]},
        "sessions": read_sessions(run_dir),
    })
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    mark_complete(run_dir)
    distributed.barrier()
    return run_dir, results

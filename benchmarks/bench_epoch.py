"""Time training epochs and validation passes of a preset, the same calls `adarec.train.fit` makes.

Usage (a script, not a test):

    python benchmarks/bench_epoch.py --preset sasrec-beauty --dataset Beauty \
        --data-dir ../shared/data --epochs 2 --warmup 1 [--device cuda] [--json out.json]

The first ``--warmup`` epochs are run but not timed (allocator, kernel selection, caches);
the table reports the median of the ``--epochs`` timed ones. Nothing is written to disk
except the optional ``--json`` file.

Under torchrun (docs/distributed.md) the same script times N processes training one model,
each on its share of every batch and of the validation users, exactly as `adarec train`
does; rank 0 prints, and the throughput counts the whole epoch's sequences:

    torchrun --standalone --nproc_per_node 2 benchmarks/bench_epoch.py --preset sasrec-beauty ...
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script

from adarec import distributed
from adarec.errors import AdarecError
from adarec.evaluate import sharded_rank_masks, summaries
from adarec.setup import eval_batch_size, make_optimizer
from adarec.train import commit_id, loss_function, negatives_high, train_epoch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--train-rows", type=int, default=None,
                   help="time epochs over a random subset of N training rows and also report "
                        "the full epoch projected linearly (for models too slow to time whole)")
    p.add_argument("--valid-rows", type=int, default=None,
                   help="validate on a random subset of N users (kept in the split's length "
                        "order) and also report the full pass projected linearly")
    p.add_argument("--eval-batch-sizes", type=int, nargs="*", default=[],
                   help="after training, also time validation at these eval batch sizes "
                        "(median of 3 passes each)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.warmup < 0:
        p.error("--epochs must be >= 1 and --warmup >= 0")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def evaluate(score_fn: Any, valid: Any, n_items: int, *, history_mask: str,
             batch_size: int) -> dict[str, dict[str, float]]:
    """`adarec.evaluate.evaluate`, each process ranking its share under torchrun (as
    `adarec.train` validates)."""
    ranks = sharded_rank_masks(score_fn, valid, n_items, history_masks=(history_mask,),
                               batch_size=batch_size)
    return summaries(ranks[history_mask], valid)


def run(args: argparse.Namespace) -> dict[str, Any]:
    config, device, autocast, splits, info, model = prepare_run(args)
    t, r = config.train, config.runtime
    by_length = t.batching == "by_length"
    # The release's ensemble trains its members one after the other: an "epoch" of it is one
    # epoch of each member, and its validation is each member's own.
    members = [stage.model for stage in model.stages()]
    train, valid = splits.train.to(device), splits.valid.to(device)
    full_rows = len(train)
    if args.train_rows is not None and args.train_rows < full_rows:
        keep = torch.randperm(full_rows, generator=torch.Generator().manual_seed(t.seed))
        keep = keep[: args.train_rows].to(device)
        train = train.take(keep)
    full_valid = len(valid)
    if args.valid_rows is not None and args.valid_rows < full_valid:
        pick = torch.randperm(full_valid, generator=torch.Generator().manual_seed(t.seed))
        valid = valid.take(pick[: args.valid_rows].sort().values.to(device))
    _sync(device)
    t_prep = time.perf_counter()
    for member in members:
        # ELCRec: k-means on the centres (on rank 0 over every process's share).
        member.before_training(distributed.shard(train.inputs), t.seed)
    _sync(device)
    prep_s = time.perf_counter() - t_prep
    optimizers = [make_optimizer(m, t, device) for m in members]
    loss_fns = [loss_function(m, compile=r.compile, mode=r.compile_mode) for m in members]
    generator = torch.Generator(device=device).manual_seed(t.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    ndcg: list[float] = []
    train_s: list[float] = []
    valid_s: list[float] = []
    total_start = time.perf_counter()
    for epoch in range(args.warmup + args.epochs):
        _sync(device)
        t0 = time.perf_counter()
        for member, optimizer, loss_fn in zip(members, optimizers, loss_fns, strict=True):
            losses = train_epoch(member, optimizer, train, batch_size=t.batch_size,
                                 generator=generator, autocast=autocast, loss_fn=loss_fn,
                                 by_length=by_length,
                                 negatives_high=negatives_high(config, info))
        _sync(device)
        t1 = time.perf_counter()
        for member in members:
            member.eval()
            metrics = evaluate(member.score, valid, info.n_items,
                               history_mask=t.history_mask,
                               batch_size=eval_batch_size(r, device))
        _sync(device)
        t2 = time.perf_counter()
        timed = epoch >= args.warmup
        ndcg.append(metrics["all"]["NDCG@20"])
        if timed:
            train_s.append(t1 - t0)
            valid_s.append(t2 - t1)
        if distributed.is_main():
            print(f"epoch {epoch + 1}{'' if timed else ' (warm-up)'}: train {t1 - t0:.2f} s, "
                  f"valid {t2 - t1:.2f} s, loss {losses['total']:.4f}, "
                  f"valid NDCG@20 {metrics['all']['NDCG@20']:.4f}", file=sys.stderr)
    total = time.perf_counter() - total_start
    valid_by_batch = {}
    for size in args.eval_batch_sizes:
        runs = []
        for _ in range(3):
            _sync(device)
            t0 = time.perf_counter()
            for member in members:
                evaluate(member.score, valid, info.n_items, history_mask=t.history_mask,
                         batch_size=size)
            _sync(device)
            runs.append(time.perf_counter() - t0)
        valid_by_batch[size] = statistics.median(runs)

    train_med = statistics.median(train_s)
    return {
        "preset": config.preset,
        "dataset": config.data.dataset,
        "device": _device_name(device),
        "precision": str(autocast or torch.float32).removeprefix("torch."),
        "compile": r.compile and r.compile_mode,
        "batching": t.batching,
        "length_buckets": r.length_buckets,
        "users": info.n_users,
        "items": info.n_items,
        "train_rows": len(train),
        "full_train_rows": full_rows,
        "train_s_per_epoch": train_med,
        "projected_full_train_s_per_epoch": train_med * full_rows / len(train),
        "valid_s": statistics.median(valid_s),
        "valid_rows": len(valid),
        "full_valid_rows": full_valid,
        "projected_full_valid_s": statistics.median(valid_s) * full_valid / len(valid),
        "eval_batch_size": eval_batch_size(r, device),
        "valid_s_by_eval_batch_size": valid_by_batch,
        "before_training_s": prep_s,
        "total_s": total,
        "train_sequences_per_s": len(train) / train_med,
        "peak_memory_mib": _peak_memory_mib(device),
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "peak RSS",
        "torch_threads": torch.get_num_threads(),
        "processes": distributed.world().size,
        "warmup_epochs": args.warmup,
        "timed_epochs": args.epochs,
        "train_s_all": train_s,
        "valid_s_all": valid_s,
        "valid_ndcg20_all": ndcg,
        "torch": str(torch.__version__),
        "commit": commit_id(),
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        ("preset", r["preset"]),
        ("dataset", r["dataset"]),
        ("device", r["device"]),
        ("precision / compile asked / batching / length buckets",
         f"{r['precision']} / {r['compile']} / {r['batching']} / {r['length_buckets']}"),
        ("users", f"{r['users']:,}"),
        ("items", f"{r['items']:,}"),
        (f"train s/epoch (median of {r['timed_epochs']}, {r['train_rows']:,} rows)",
         f"{r['train_s_per_epoch']:.2f}"),
        (f"projected train s/epoch ({r['full_train_rows']:,} rows)",
         f"{r['projected_full_train_s_per_epoch']:.2f}"),
        (f"valid s (median, eval batch {r['eval_batch_size']}, {r['valid_rows']:,} users)",
         f"{r['valid_s']:.3f}"),
        (f"projected valid s ({r['full_valid_rows']:,} users)",
         f"{r['projected_full_valid_s']:.3f}"),
        *((f"valid s (eval batch {b})", f"{v:.3f}")
          for b, v in r["valid_s_by_eval_batch_size"].items()),
        ("before_training s (once)", f"{r['before_training_s']:.2f}"),
        (f"total s ({r['warmup_epochs']} warm-up + {r['timed_epochs']} epochs)",
         f"{r['total_s']:.1f}"),
        ("train sequences/s", f"{r['train_sequences_per_s']:,.0f}"),
        (f"peak memory MiB ({r['peak_memory_kind']})", f"{r['peak_memory_mib']:,.0f}"),
        ("torch threads", str(r["torch_threads"])),
        ("processes (torchrun)", str(r["processes"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.stop()
    if distributed.launched().rank == 0:
        print(table(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

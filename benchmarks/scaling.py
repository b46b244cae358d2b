"""How SASRec's epoch time and memory grow with users and items (synthetic data).

Usage (a script, not a test):

    python benchmarks/scaling.py --users 10000 100000 1000000 --items 10000 100000 \
        [--preset default] [--train-rows 2560] [--valid-rows 2048] [--set KEY=VALUE ...]

Each (users, items) pair runs `bench_epoch.py` in its own process (peak memory is per
process) on synthetic data of that size, times one epoch over ``--train-rows`` random training
rows and one validation pass over ``--valid-rows`` users, and projects both to the full size
linearly (each training row and each validated user costs about the same). Prints a markdown
table; ``--json`` keeps every measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--preset", default="default")
    p.add_argument("--train-rows", type=int, default=2560)
    p.add_argument("--valid-rows", type=int, default=2048)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for users in args.users:
            for items in args.items:
                out = Path(tmp) / f"{users}-{items}.json"
                cmd = [sys.executable, str(HERE / "bench_epoch.py"), "--preset", args.preset,
                       "--dataset", "synthetic", "--device", "cpu", "--warmup", "1",
                       "--epochs", "1", "--train-rows", str(args.train_rows),
                       "--valid-rows", str(args.valid_rows), "--json", str(out),
                       "--set", f"data.synthetic_users={users}",
                       "--set", f"data.synthetic_items={items}",
                       *(a for kv in args.overrides for a in ("--set", kv))]
                print(f"users {users:,}, items {items:,} ...", file=sys.stderr, flush=True)
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-2000:], file=sys.stderr)
                    return done.returncode
                rows.append(json.loads(out.read_text()))

    print("| users | items | training rows | train s/epoch (projected) | validation s "
          "(projected) | peak RSS MiB | train sequences/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['users']:,} | {r['items']:,} | {r['full_train_rows']:,} | "
              f"{r['projected_full_train_s_per_epoch']:,.1f} | "
              f"{r['projected_full_valid_s']:,.1f} | {r['peak_memory_mib']:,.0f} | "
              f"{r['train_sequences_per_s']:,.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

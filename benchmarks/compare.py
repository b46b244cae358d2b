"""Train several configurations over several seeds and print a comparison table.

Usage (a script, not a test), e.g. the synthetic comparison of issue 4:

    python benchmarks/compare.py --out results/synthetic --seeds 1 2 3 \
        --run sasrec=default \
        --run elcrec=default,model.name=elcrec,intents.n_intents=32 \
        --run adarec=default,model.name=adarec,intents.n_intents=32,adarec.max_depth=4

Each ``--run NAME=PRESET[,key=value...]`` is trained to early stopping once per seed with
`adarec.train.fit`; ``OUT/NAME-seed<k>.json`` keeps its results, and a run whose file
already exists is read back instead of trained again (an interrupted comparison resumes).
The table gives test HR@5, NDCG@5, HR@20 and NDCG@20 (mean and standard deviation over
seeds) for all users and for each history-length bucket.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from adarec.config import load_config
from adarec.train import fit

METRICS = ("HR@5", "NDCG@5", "HR@20", "NDCG@20")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=PRESET[,k=v...]")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--out", type=Path, required=True, help="directory for per-run JSON")
    p.add_argument("--groups", nargs="+", default=["all", "len<=5"])
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    table: dict[str, dict[str, list[dict[str, float]]]] = {}
    for spec in args.run:
        name, _, rest = spec.partition("=")
        preset, *overrides = rest.split(",")
        for seed in args.seeds:
            done = args.out / f"{name}-seed{seed}.json"
            if done.is_file():  # resume: a finished run is read back, not trained again
                results = json.loads(done.read_text())
            else:
                cfg = load_config(preset, overrides=[*overrides, f"train.seed={seed}",
                                                     f"output_dir={args.out / 'runs'}"])
                _, results = fit(cfg, run_name=f"{name}-seed{seed}", progress=False)
                done.write_text(json.dumps(results, indent=2))
            for group in args.groups:
                table.setdefault(group, {}).setdefault(name, []).append(results["test"][group])
            print(f"{name} seed {seed}: best epoch {results['best_epoch']}, test NDCG@20 "
                  f"{results['test']['all']['NDCG@20']:.4f}", flush=True)

    for group, rows in table.items():
        users = next(iter(rows.values()))[0]["users"]
        print(f"\n### test, {group} ({users} users), mean ± sd over seeds {args.seeds}\n")
        print("| model | " + " | ".join(METRICS) + " |")
        print("|---|" + "---|" * len(METRICS))
        for name, runs in rows.items():
            cells = []
            for m in METRICS:
                values = [r[m] for r in runs]
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.4f} ± {sd:.4f}")
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Per-epoch training losses and validation NDCG@20 of a few tiny runs, to check that a
refactoring changes no number (run it before and after; the output must be identical).

    PYTHONPATH=src python benchmarks/smoke_losses.py --data-dir /work/shared/data

Each run trains on the first ``--users`` users of Beauty (written to a temporary file) on the
CPU, for ``--epochs`` epochs, through `adarec.train.fit`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from adarec.config import load_config
from adarec.train import fit

RUNS = {
    "sasrec": ("sasrec-beauty", []),
    "elcrec": ("elcrec-beauty", ["model.hidden_size=16", "intents.n_intents=8"]),
    "adarec": ("adarec-beauty", ["model.hidden_size=16", "adarec.max_depth=3"]),
    "release": ("release-beauty", ["model.hidden_size=16", "intents.n_intents=8"]),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="/work/shared/data")
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--runs", nargs="*", default=list(RUNS))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(args.data_dir, "Beauty.txt").read_text().splitlines()[: args.users]
        data = Path(tmp, "beauty-head.txt")
        data.write_text("\n".join(lines) + "\n")
        for name in args.runs:
            preset, overrides = RUNS[name]
            config = load_config(preset, overrides=[
                "data.dataset=file", f"data.data_file={data}", "runtime.device=cpu",
                f"train.max_epochs={args.epochs}", f"output_dir={tmp}/runs", *overrides,
            ])
            run_dir, results = fit(config, run_name=name, progress=False)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines():
                log = json.loads(line)
                losses = " ".join(f"{k}={v!r}" for k, v in sorted(log["losses"].items()))
                print(f"{name}{log.get('member', '')} epoch {log['epoch']}: {losses} "
                      f"valid NDCG@20={log['valid']['all']['NDCG@20']!r}")
            print(f"{name} test NDCG@20={results['test']['all']['NDCG@20']!r}")


if __name__ == "__main__":
    main()

"""Score ELCRec's released weights with adarec's model and evaluator (issue 39).

yueliu1999/ELCRec publishes trained models with their logs: ``src/output/ELCRec-Beauty-1.pt``
and ``src/output/ELCRec-Toys_and_Games-1.pt`` (fetch them yourself; the logs are
``ELCRec-<dataset>-1.txt`` beside them). This maps such a file onto adarec's ``elcrec``
model (`adarec.model.elcrec_port`), evaluates it on adarec's leave-one-out test split, and
prints HR@5, NDCG@5, HR@20 and NDCG@20 under both history masks beside the released log's
test line. ELCRec's own evaluation is the ``zero`` mask (history scores set to 0, its
``n + 2`` item columns all ranked); its metrics must equal the log's to its 4 decimals.

    python benchmarks/elcrec_weights.py ELCRec-Beauty-1.pt --dataset Beauty \\
        --data-dir ../shared/data

Exit 0 when the ``zero`` mask's four numbers equal the log's, 1 when they do not, 2 (one
``error:`` line) for a file that is not an ELCRec model of that dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from adarec.config import load_config
from adarec.errors import AdarecError
from adarec.evaluate import evaluate_masks
from adarec.model.elcrec_port import elcrec_shape, load_elcrec_state
from adarec.setup import setup_run

PRESETS = {"Beauty": "elcrec-beauty", "Toys_and_Games": "elcrec-toys",
           "Sports_and_Outdoors": "elcrec-sports", "Yelp": "elcrec-yelp"}
# The test line of each released log, src/output/ELCRec-<dataset>-1.txt at ad6e1c8
# (HIT@5, NDCG@5, HIT@20, NDCG@20); weights are published for Beauty and Toys only.
RELEASED = {"Beauty": (0.0529, 0.0355, 0.1079, 0.0509),
            "Toys_and_Games": (0.0585, 0.0403, 0.1138, 0.0560),
            "Sports_and_Outdoors": (0.0286, 0.0185, 0.0648, 0.0286),
            "Yelp": (0.0236, 0.0150, 0.0653, 0.0266)}
COLUMNS = ("HR@5", "NDCG@5", "HR@20", "NDCG@20")


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``; `AdarecError` for anything else (weights only: no code
    from the file runs)."""
    if not path.is_file():
        raise AdarecError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read a foreign file is bad input
        text = str(exc).strip()
        why = type(exc).__name__ + (": " + text.splitlines()[0].split(". ")[0][:160]
                                    if text else "")
        raise AdarecError(f"{path}: not a readable PyTorch state dict ({why})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise AdarecError(f"{path}: not a state dict (a mapping of names to tensors); an "
                          "adarec run's checkpoint is read by `adarec evaluate`")
    return state


def score_released(path: Path, dataset: str, data_dir: str | None,
                   ties: str) -> dict[str, dict[str, float]]:
    state = read_state(path)
    shape = elcrec_shape(state)
    config = load_config(PRESETS[dataset], overrides=[
        *([f"data.data_dir={data_dir}"] if data_dir else []),
        f"model.hidden_size={shape['hidden_size']}", f"model.num_layers={shape['num_layers']}",
        f"intents.n_intents={shape['n_intents']}", "runtime.device=cpu",
    ])
    run = setup_run(config)
    n_items = run.info.n_items
    if shape["rows"] != n_items + 2:
        raise AdarecError(f"{path}: its item table has {shape['rows']} rows; an ELCRec model "
                          f"of {dataset} ({n_items} items) has {n_items + 2}: another dataset?")
    if shape["max_len"] != run.info.max_len:
        raise AdarecError(f"{path}: {shape['max_len']} positions; {dataset}'s split uses "
                          f"max_len {run.info.max_len}")
    if config.model.num_heads and shape["hidden_size"] % config.model.num_heads:
        raise AdarecError(f"{path}: width {shape['hidden_size']} does not split into "
                          f"{config.model.num_heads} heads")
    model = run.model
    load_elcrec_state(model, state)
    model.eval()
    result = evaluate_masks(model.score, run.splits.test, n_items, ties=ties,
                            batch_size=config.runtime.eval_batch_size or 2048)
    return {mask: r["all"] for mask, r in result.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="ELCRec's released .pt file")
    p.add_argument("--dataset", required=True, choices=sorted(PRESETS))
    p.add_argument("--data-dir", help="directory holding the benchmark files")
    p.add_argument("--ties", choices=("conservative", "by_id"), default="conservative",
                   help="how an answer tied with other items ranks (docs/protocol.md#ties)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        metrics = score_released(args.path, args.dataset, args.data_dir, args.ties)
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    released = RELEASED[args.dataset]
    print(f"{args.path.name} on {args.dataset} test ({int(metrics['zero']['users'])} users), "
          f"ties={args.ties}")
    print(f"{'':24}" + "".join(f"{c:>9}" for c in COLUMNS))
    print(f"{'released log':24}" + "".join(f"{v:9.4f}" for v in released))
    for mask in ("zero", "inf"):
        print(f"{'adarec, mask ' + mask:24}"
              + "".join(f"{metrics[mask][c]:9.4f}" for c in COLUMNS))
    ours = tuple(round(metrics["zero"][c], 4) for c in COLUMNS)
    same = all(abs(a - b) < 5e-9 for a, b in zip(ours, released, strict=True))
    print("zero mask equals the released log to 4 decimals: " + ("yes" if same else "NO"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

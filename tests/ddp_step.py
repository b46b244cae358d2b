"""One training step's gradients, alone or as one of several gloo processes (for
tests/test_distributed.py): the same model, global batch and fixed randomness either way.

Randomness is fixed so that a row's numbers do not depend on which process holds it:
dropout is off, the augmentations and the diffusion / release noise are functions of the
rows themselves, the depth controller takes its argmax, and the sampled negatives are
functions of the targets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from adarec import distributed
from adarec.config import load_config
from adarec.model import elcrec, losses, release
from adarec.model.diffusion import DepthController, HierarchicalDiffusion
from adarec.setup import setup_run
from adarec.train import loss_function, make_batch

SMALL = ["data.dataset=synthetic", "data.synthetic_users=300", "runtime.device=cpu",
         "model.attn_dropout=0", "model.hidden_dropout=0"]
CASES = {
    "sasrec": ("default", []),
    "elcrec": ("elcrec-beauty", ["model.hidden_size=16", "intents.n_intents=8",
                                 "intents.pool=real"]),
    # ELCRec's pooling: full-width passes, padding outputs in every contrastive loss.
    "elcrec-allpos": ("elcrec-beauty", ["model.hidden_size=16", "intents.n_intents=8"]),
    "adarec": ("adarec-beauty", ["model.hidden_size=16", "adarec.max_depth=3",
                                 "intents.n_intents=8"]),
    # "HP-MoE only" (no levels): its denoiser once had no gradient, which DDP refuses.
    "adarec-hpmoe": ("adarec-beauty", ["model.hidden_size=16", "adarec.max_depth=0",
                                       "adarec.fixed_depth=0", "intents.n_intents=8"]),
    "release": ("release-beauty", ["model.hidden_size=16", "intents.n_intents=8"]),
}
GLOBAL_ROWS = 64
# Relative gradient tolerance of a case against the single process (default 1e-5). With
# ELCRec's pooling the instance loss's logits are dot products over all 50 positions
# (about 80 at the start); every parameter then differs by 2e-6 to 2.4e-5 relative between
# the two ways of summing, float32 noise spread evenly, where a wrong share would be O(1).
TOLERANCE = {"elcrec-allpos": 1e-4}


def _views(state: list[int]):  # noqa: ANN202 - a stand-in for random_augment
    """Deterministic "augmentations": alternately the rows as they are and the rows with
    every item divisible by 3 masked (padding id); no random draw."""
    def augment(seqs: torch.Tensor, **_: object) -> torch.Tensor:
        state[0] += 1
        return seqs.clone() if state[0] % 2 else torch.where(seqs % 3 == 0, 0, seqs)
    return augment


def _noise(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Noise as a function of the row's own values (the same whichever process holds it)."""
    k = torch.arange(1, shape[0] + 1, dtype=like.dtype).view(-1, *([1] * like.dim()))
    return torch.sin(like.detach().unsqueeze(0) * 7.0 + k).expand(shape)


def _argmax_depth(self: DepthController, logits: torch.Tensor) -> torch.Tensor:
    soft = (logits / self.tau).softmax(-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def fix_randomness(set_: Callable[[object, str, object], None] = setattr) -> None:
    """Replace every random draw of a training step by a function of the rows (``set_``:
    e.g. pytest's ``monkeypatch.setattr``)."""
    state = [0]
    set_(elcrec, "random_augment", _views(state))
    set_(release, "random_augment", _views(state))
    set_(HierarchicalDiffusion, "_noise", lambda self, shape, like: _noise(shape, like))
    set_(release.ReleaseMember, "noise", staticmethod(_noise))
    set_(DepthController, "_sample", _argmax_depth)
    set_(losses.SampledBCE, "sample_negatives",
         lambda self, targets, inputs: (targets * 31 + 7) % self.n_items + 1)


def step_gradients(name: str) -> dict[str, torch.Tensor]:
    """Gradients of one step on the first `GLOBAL_ROWS` training rows of case ``name`` (as
    this process: alone, the whole batch; under a process group, its share)."""
    preset, extra = CASES[name]
    config = load_config(preset, overrides=[*SMALL, *extra])
    run = setup_run(config)
    model = run.model.stages()[0].model
    train = run.splits.train
    # The first rows' share as k-means sees it (gathered back in order under a group).
    model.before_training(distributed.shard(train.inputs), config.train.seed)
    negatives = (train.targets * 31 + 7) % run.info.n_items + 1
    rows = torch.arange(GLOBAL_ROWS)
    batch = make_batch(train, rows, negatives, trim=True, world=distributed.world())
    step = loss_function(model)  # as the loop makes it (kept alive: DDP's hooks live in it)
    out = step(batch)
    out.total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no loss reaches {missing} (DDP needs every parameter used)"
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    grads["_real_targets"] = (batch.targets > 0).sum().reshape(1).float()
    return grads


def worker(rank: int, size: int, port: int, out: str) -> None:
    """A process of a gloo group of ``size``: every case's gradients, written by rank 0
    (with the number of real target positions of each process's share)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank),
                       "OMP_NUM_THREADS": "1"})
    if sys.platform.startswith("linux"):
        # The group meets on loopback: without this, gloo picks the interface of the
        # machine's host name, which on some sandboxes cannot connect (SIGABRT at start).
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    fix_randomness()
    distributed.start(torch.device("cpu"))
    try:
        results = {}
        for name in CASES:
            grads = step_gradients(name)
            counts = distributed.all_objects(float(grads.pop("_real_targets")))
            results[name] = {"grads": grads, "counts": counts}
        try:  # an unexpected failure in rank 0's own work reaches every process
            distributed.from_main(lambda: 1 / 0)
            caught = "nothing"
        except (ZeroDivisionError, RuntimeError) as exc:
            caught = f"{type(exc).__name__}: {exc}"
        results["from_main_failure"] = distributed.all_objects(caught)
        if rank == 0:
            torch.save(results, Path(out))
    finally:
        distributed.stop()

"""Helpers of the serving tests: tiny checkpoints and a real uvicorn server on a free
loopback port, run in a thread of the test process."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from adarec.checkpoint import save_checkpoint
from adarec.config import load_config
from adarec.data.load import DataInfo
from adarec.model.build import build_model

TINY = ["model.hidden_size=16", "model.num_layers=1", "intents.n_intents=4",
        "adarec.max_depth=2", "adarec.fixed_depth=2"]


def tiny_checkpoint(folder: Path, *, n_items: int, max_len: int, name: str = "sasrec",
                    overrides: tuple[str, ...] = (), commit: str | None = None) -> Path:
    """An untrained model's checkpoint (seeded weights); ``commit`` goes into a
    ``results.json`` beside it, as a training run writes one."""
    config = load_config(overrides=[f"model.name={name}", f"data.max_len={max_len}", *TINY,
                                    *overrides])
    torch.manual_seed(0)
    model = build_model(config, n_items=n_items, max_len=max_len).eval()
    info = DataInfo(n_users=1, n_items=n_items, n_interactions=1, max_len=max_len,
                    source="tests")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "best.pt"
    save_checkpoint(path, model=model, config=config, info=info, epoch=3, metrics={})
    if commit is not None:
        (folder / "results.json").write_text(json.dumps({"commit": commit}))
    return path


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Load test of `adarec serve`: many concurrent clients on the loopback address.

Usage (a script, not a test; needs adarec[serve]):

    # against a server that is already running
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --requests 10000 --concurrency 100

    # or let the script start and stop `adarec serve` itself, once per engine, on an
    # untrained model of a preset's size (no data or training needed) or a run directory
    python benchmarks/load_test.py --untrained sasrec-beauty --items 12101 \
        --engines torch onnxruntime --requests 10000 --concurrency 100

Each client sends ``POST /recommend`` (``--batch 0``) or ``/recommend/batch`` with ``--batch``
histories, one request at a time, over its own keep-alive connection (a thin asyncio
client, see `Connection`), until ``--requests``
have been sent or ``--time-limit`` seconds have passed (then it stops: the count is bounded
both ways). Histories are drawn with a fixed seed: the users' sequences of ``--histories``
(a sequence file such as Beauty.txt), else random items with lengths uniform in 1..max_len.
``--warmup`` requests go first and are not counted. Prints requests, errors (non-200
answers, answers without k items, failed connections), throughput, p50/p95/p99/max latency
and the CPU seconds of the client and (when the script started it) of the server;
``--json`` keeps them. On a shared machine the CPU seconds per request say more than the
latencies, which also wait for other work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def histories_from(path: Path | None, n_items: int, max_len: int, rng: random.Random,
                   count: int = 5000) -> list[list[int]]:
    """``count`` histories: the (shuffled) sequences of ``path``, or random ones."""
    if path is not None:
        rows = [[int(t) for t in line.split()[1:]] for line in path.read_text().splitlines()]
        rows = [r for r in rows if r]
        rng.shuffle(rows)
        return rows[:count]
    return [[rng.randint(1, n_items) for _ in range(rng.randint(1, max_len))]
            for _ in range(count)]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of ascending values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class Connection:
    """One keep-alive HTTP/1.1 connection sending pre-encoded requests.

    A deliberately thin client: on 2 cores the load generator shares the CPU with the server,
    and httpx's AsyncClient spent about 5 ms of CPU per request here (more than the server
    itself), so latencies measured the client. This one parses only the status line and
    Content-Length (uvicorn always sends it); the body is checked by the caller.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.index(b"content-length:") + len(b"content-length:")
            body = await self.reader.readexactly(int(lower[at:lower.index(b"\r\n", at)]))
            if b"connection: close" in lower:
                await self.close()
            return status, body
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


def encode(host: str, port: int, path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


def answered(body: bytes, k: int, batch: int) -> bool:
    """A 200's body is the answer asked for: k items (or one answer per history)."""
    got = json.loads(body)
    answers = got["results"] if batch else [got]
    return len(answers) == max(batch, 1) and all(len(a["items"]) == k for a in answers)


async def drive(url: str, raws: list[bytes], *, requests: int, concurrency: int,
                time_limit: float, warmup: int, k: int, batch: int) -> dict:
    """Send the requests; returns the counts and latency figures (milliseconds)."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    first = Connection(host, port)
    for raw in raws[:warmup]:
        status, _ = await first.request(raw)
        if status != 200:
            raise SystemExit(f"warmup request answered {status}")
    await first.close()
    start, cpu0 = time.perf_counter(), time.process_time()
    deadline = start + time_limit

    async def one_client() -> None:
        nonlocal sent
        conn = Connection(host, port)
        while sent < requests and time.perf_counter() < deadline:
            raw = raws[sent % len(raws)]
            sent += 1
            t0 = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(conn.request(raw), 60.0)
                key = None if status == 200 else f"HTTP {status}"
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                status, body, key = 0, b"", type(exc).__name__
            latencies.append((time.perf_counter() - t0) * 1000)
            if key is None and not answered(body, k, batch):
                key = "wrong answer"
            if key is not None:
                errors[key] = errors.get(key, 0) + 1
        await conn.close()

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "client_cpu_s": round(time.process_time() - cpu0, 2),
        "requests": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
        "seconds": round(wall, 3), "throughput_rps": round(len(latencies) / wall, 1),
        **{f"p{q}_ms": round(percentile(latencies, q), 2) for q in (50, 95, 99)},
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "stopped_by": "time limit" if len(latencies) < requests else "request count",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no healthy server at {url} after {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def untrained_checkpoint(preset: str, n_items: int, folder: Path) -> Path:
    """An untrained model of ``preset``'s size for ``n_items`` items (latency only)."""
    import torch

    from adarec.checkpoint import save_checkpoint
    from adarec.config import load_config
    from adarec.data.load import DataInfo
    from adarec.model.build import build_model

    config = load_config(preset)
    torch.manual_seed(0)
    max_len = config.data.max_len
    model = build_model(config, n_items=n_items, max_len=max_len).eval()
    info = DataInfo(n_users=0, n_items=n_items, n_interactions=0, max_len=max_len,
                    source=f"untrained {preset}")
    path = folder / "best.pt"
    save_checkpoint(path, model=model, config=config, info=info, epoch=0, metrics={})
    return path


def run_against(url: str, args: argparse.Namespace) -> dict:
    meta = httpx.get(f"{url}/metadata", timeout=10.0).json()
    rng = random.Random(args.seed)
    hist = histories_from(args.histories, meta["n_items"], meta["max_len"], rng)
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    if args.batch:
        bodies = [{"histories": [rng.choice(hist) for _ in range(args.batch)], "k": args.k}
                  for _ in range(1000)]
        path = "/recommend/batch"
    else:
        bodies = [{"history": h, "k": args.k} for h in hist]
        path = "/recommend"
    raws = [encode(host, port, path, b) for b in bodies]
    result = asyncio.run(drive(url, raws, requests=args.requests, concurrency=args.concurrency,
                               time_limit=args.time_limit, warmup=args.warmup, k=args.k,
                               batch=args.batch))
    return {"engine": meta["engine"], "model": meta["model"], "n_items": meta["n_items"],
            **result}


def serve_and_run(checkpoint: Path, engine: str, args: argparse.Namespace) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "adarec", "serve", str(checkpoint), "--port", str(port),
               "--engine", engine, *args.server_arg]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_healthy(url, proc)
        cpu0 = cpu_seconds(proc.pid)
        result = run_against(url, args)
        # Includes the warmup's and /metadata's few requests.
        result["server_cpu_s"] = round(cpu_seconds(proc.pid) - cpu0, 2)
        return {**result, "server": " ".join(command[2:])}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    p.add_argument("--run", type=Path, help="start `adarec serve` on this run or checkpoint")
    p.add_argument("--untrained", metavar="PRESET", help="start it on an untrained PRESET")
    p.add_argument("--items", type=int, default=12101, help="items of --untrained (Beauty's)")
    p.add_argument("--engines", nargs="+", default=["torch"], help="with --run/--untrained")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra `adarec serve` argument (repeatable), e.g. --server-arg=--no-gather")
    p.add_argument("--requests", type=int, default=10_000, help="counted requests (at most)")
    p.add_argument("--concurrency", type=int, default=100, help="clients at once")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds (at most)")
    p.add_argument("--warmup", type=int, default=200, help="uncounted requests first")
    p.add_argument("--batch", type=int, default=0, help="histories per request (0: single)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--histories", type=Path, help="sequence file to draw histories from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if sum(x is not None for x in (args.url, args.run, args.untrained)) != 1:
        p.error("give exactly one of --url, --run, --untrained")
    if args.url:
        results = [run_against(args.url.rstrip("/"), args)]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            target = args.run or untrained_checkpoint(args.untrained, args.items, Path(tmp))
            results = [serve_and_run(target, engine, args) for engine in args.engines]
    columns = ["engine", "requests", "errors", "seconds", "throughput_rps", "p50_ms",
               "p95_ms", "p99_ms", "max_ms", "server_cpu_s", "client_cpu_s", "stopped_by"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in results:
        print("| " + " | ".join(str(r.get(c, "-")) for c in columns) + " |")
    for r in results:
        if r["error_kinds"]:
            print(f"{r['engine']} errors: {r['error_kinds']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

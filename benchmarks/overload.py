"""Open-loop overload test of `adarec serve`: latency at fixed offered rates, load shedding.

Usage (a script, not a test; needs adarec[serve]):

    python benchmarks/overload.py --untrained sasrec-beauty --items 12101 \
        --seconds 15 --json overload.json

Starts `adarec serve` on an untrained model of the preset's size (or ``--run`` a run
directory). It first measures the capacity on a server without an admission limit
(``--max-queue 0``): ``--concurrency`` closed-loop clients, one request at a time each, for
``--capacity-seconds``; the completed requests per second are the capacity. Then, on a
server per ``--max-queue`` value (default: 32, the server's default, 16 and 0, no limit), it
offers requests OPEN LOOP at 0.5x, 1x and 2x that capacity
(``--factors``): Poisson arrivals at the offered rate, each request sent at its scheduled
time on an idle keep-alive connection (a new one when none is idle), whatever the earlier
requests are doing; a request's latency runs from its scheduled time, so time spent waiting
for a connection or in the server's queue counts. A closed loop would only wait for the
server and measure its saturation, not the latency a user sees (docs/serving.md#overload).

Per rate it prints: offered and achieved (200) rates, p50 / p99 / max latency of the
admitted (200) requests, the shed share (503) and any other outcome (other statuses,
failed connections, wrong answers). Timings are only comparable within one run on a quiet
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from load_test import (  # benchmarks/load_test.py, beside this script
    Connection,
    answered,
    drive,
    encode,
    free_port,
    histories_from,
    percentile,
    untrained_checkpoint,
    wait_healthy,
)


async def open_loop(host: str, port: int, raws: list[bytes], *, rate: float, seconds: float,
                    k: int, seed: int) -> dict:
    """Poisson arrivals at ``rate`` per second for ``seconds``; latency from schedule."""
    rng = random.Random(seed)
    idle: list[Connection] = []
    admitted: list[float] = []
    outcomes: dict[str, int] = {}

    async def one(raw: bytes, scheduled: float) -> None:
        conn = idle.pop() if idle else Connection(host, port)
        try:
            status, body = await asyncio.wait_for(conn.request(raw), 60.0)
            key = "200" if status == 200 else str(status)
            if status == 200 and not answered(body, k, 0):
                key = "wrong answer"
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            key = type(exc).__name__
        done = time.perf_counter()
        if key == "200":
            admitted.append((done - scheduled) * 1000)
        outcomes[key] = outcomes.get(key, 0) + 1
        if conn.writer is not None:
            idle.append(conn)

    tasks, start = [], time.perf_counter()
    t, i = 0.0, 0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        scheduled = start + t
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(raws[i % len(raws)], scheduled)))
        i += 1
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for conn in idle:
        await conn.close()
    admitted.sort()
    sent = len(tasks)
    return {
        "offered_rps": round(rate, 1), "sent": sent,
        "achieved_rps": round(outcomes.get("200", 0) / wall, 1),
        "p50_ms": round(percentile(admitted, 50), 2) if admitted else None,
        "p99_ms": round(percentile(admitted, 99), 2) if admitted else None,
        "max_ms": round(admitted[-1], 2) if admitted else None,
        "shed_share": round(outcomes.get("503", 0) / max(sent, 1), 4),
        "other": {key: n for key, n in outcomes.items() if key not in ("200", "503")},
    }


class Server:
    """`adarec serve` on ``checkpoint`` with ``--max-queue``, on a free port, while in use."""

    def __init__(self, checkpoint: Path, max_queue: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "adarec", "serve", str(checkpoint), "--port",
                        str(self.port), "--max-queue", str(max_queue)]

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        wait_healthy(self.url, self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def requests(self, args: argparse.Namespace) -> list[bytes]:
        import httpx

        meta = httpx.get(f"{self.url}/metadata", timeout=10.0).json()
        hist = histories_from(args.histories, meta["n_items"], meta["max_len"],
                              random.Random(args.seed))
        return [encode("127.0.0.1", self.port, "/recommend", {"history": h, "k": args.k})
                for h in hist]


def capacity(checkpoint: Path, args: argparse.Namespace) -> dict:
    """Closed-loop saturation of a server without an admission limit: its capacity."""
    with Server(checkpoint, 0) as server:
        closed = asyncio.run(drive(server.url, server.requests(args), requests=10**9,
                                   concurrency=args.concurrency,
                                   time_limit=args.capacity_seconds, warmup=50, k=args.k,
                                   batch=0))
    print("capacity (closed loop, no admission limit): " + json.dumps(closed), flush=True)
    if closed["errors"]:
        raise SystemExit(f"the capacity run had errors: {closed['error_kinds']}")
    return closed


def offered(checkpoint: Path, max_queue: int, rate: float, args: argparse.Namespace) -> dict:
    rows = []
    with Server(checkpoint, max_queue) as server:
        raws = server.requests(args)
        asyncio.run(drive(server.url, raws, requests=50, concurrency=1, time_limit=30,
                          warmup=50, k=args.k, batch=0))  # warm up
        for factor in args.factors:
            row = asyncio.run(open_loop("127.0.0.1", server.port, raws, rate=factor * rate,
                                        seconds=args.seconds, k=args.k, seed=args.seed))
            rows.append({"factor": factor, **row})
            print(f"max_queue {max_queue:>3}  {factor:>4}x  " + json.dumps(row), flush=True)
    return {"max_queue": max_queue, "rates": rows, "server": " ".join(server.command[2:])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="serve this run directory or checkpoint")
    p.add_argument("--untrained", metavar="PRESET", default="sasrec-beauty",
                   help="serve an untrained PRESET (default) when --run is not given")
    p.add_argument("--items", type=int, default=12101, help="items of --untrained (Beauty's)")
    p.add_argument("--histories", type=Path, help="a sequence file to draw histories from")
    p.add_argument("--max-queue", type=int, nargs="+", default=[32, 16, 0],
                   help="server --max-queue values to compare (0: no limit)")
    p.add_argument("--factors", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                   help="offered rates as multiples of the measured capacity")
    p.add_argument("--seconds", type=float, default=15.0, help="per offered rate")
    p.add_argument("--capacity-seconds", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.run or untrained_checkpoint(args.untrained, args.items, Path(tmp))
        closed = capacity(checkpoint, args)
        rate = closed["throughput_rps"]
        results = {"capacity_rps": rate, "closed_loop": closed,
                   "servers": [offered(checkpoint, q, rate, args) for q in args.max_queue]}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

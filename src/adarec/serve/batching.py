"""One inference thread for the server, optionally gathering concurrent requests.

Inference runs on a single worker thread, so concurrent requests never oversubscribe the
cores (the engine's own threads do the parallel work). With ``gather``, requests that
arrive while the worker is busy (or within ``wait_s`` of the first) are scored together in
one engine call of at most ``max_rows`` histories: micro-batching (docs/serving.md#load-test has
the measurement that decides the default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from adarec.serve.service import Answer, Query

AnswerFn = Callable[[Sequence[Query]], list[Answer]]


class _Job(NamedTuple):
    queries: Sequence[Query]
    future: asyncio.Future


class InferenceWorker:
    """``await submit(queries)`` -> their answers, computed on the one worker thread."""

    def __init__(self, answer: AnswerFn, *, gather: bool, max_rows: int, wait_s: float) -> None:
        self.answer, self.gather = answer, gather
        self.max_rows, self.wait_s = max_rows, wait_s
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adarec-inference")
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._held: _Job | None = None  # a job that did not fit in the last batch
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self.gather:
            self._task = asyncio.create_task(self._gather_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def submit(self, queries: Sequence[Query]) -> list[Answer]:
        loop = asyncio.get_running_loop()
        if not self.gather:
            return await loop.run_in_executor(self.pool, self.answer, queries)
        job = _Job(queries, loop.create_future())
        self.queue.put_nowait(job)
        return await job.future

    async def _next_batch(self) -> list[_Job]:
        """The held job or the next one, then whatever else fits before ``wait_s`` ends."""
        loop = asyncio.get_running_loop()
        jobs = [self._held or await self.queue.get()]
        self._held = None
        rows = len(jobs[0].queries)
        deadline = loop.time() + self.wait_s
        while rows < self.max_rows:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:  # TimeoutError itself from 3.11 on
                    break
            if rows + len(job.queries) > self.max_rows:
                self._held = job
                break
            jobs.append(job)
            rows += len(job.queries)
        return jobs

    async def _gather_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            queries = [q for job in jobs for q in job.queries]
            try:
                answers = await loop.run_in_executor(self.pool, self.answer, queries)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                stop = start + len(job.queries)
                if not job.future.done():  # its client may have gone
                    job.future.set_result(answers[start:stop])
                start = stop

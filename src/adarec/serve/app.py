"""The HTTP service: an app factory over a loaded `Recommender` (docs/serving.md).

Every bad request gets a 4xx with ``{"error": "...", "detail": ...}`` and the server goes
on serving: 413 for a body over the limit, 415 for a body of another content type, 422 for
malformed JSON, wrong types, empty histories, unknown items, k outside 1..n_items or too
many histories, 404/405 for unknown paths and methods. Beyond the admission limit
(``Limits.max_queue``) a recommendation request gets 503 with ``Retry-After`` at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adarec.serve.batching import InferenceWorker
from adarec.serve.ids import BadRequest
from adarec.serve.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorBody,
    Health,
    Metadata,
    Recommendation,
    RecommendRequest,
)
from adarec.serve.service import Recommender


@dataclass(frozen=True)
class Limits:
    """Request limits and the inference worker's batching
    (docs/serving.md#bad-requests-and-limits)."""

    max_body_bytes: int = 1 << 20
    max_batch: int = 256
    gather: bool = True
    wait_ms: float = 0.0
    max_queue: int = 32
    """Most recommendation requests admitted and unanswered at a time; beyond, 503 at once
    (0: no limit). See `Admission`."""
    retry_after_s: int = 1
    """The ``Retry-After`` of a 503."""


def get_recommender(request: Request) -> Recommender:
    """The loaded model state (a dependency; tests may override it)."""
    return request.app.state.recommender


def get_worker(request: Request) -> InferenceWorker:
    return request.app.state.worker


def get_limits(request: Request) -> Limits:
    return request.app.state.limits


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
WorkerDep = Annotated[InferenceWorker, Depends(get_worker)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
ERRORS = {code: {"model": ErrorBody} for code in (413, 415, 422, 503)}


def create_app(recommender: Recommender, limits: Limits | None = None) -> FastAPI:
    """A FastAPI app serving ``recommender``; its inference worker lives with the app."""
    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = InferenceWorker(recommender.answer, gather=limits.gather,
                                 max_rows=limits.max_batch, wait_s=limits.wait_ms / 1000)
        await worker.start()
        app.state.worker = worker
        try:
            yield
        finally:
            await worker.stop()

    app = FastAPI(title="adarec", summary="Top-k next-item recommendations.",
                  lifespan=lifespan)
    app.state.recommender, app.state.limits = recommender, limits
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if limits.max_queue:  # added last: it runs first, before the body is read
        app.add_middleware(Admission, max_in_flight=limits.max_queue,
                           retry_after_s=limits.retry_after_s)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(HTTPException, _http_error)

    @app.get("/health")
    def health() -> Health:
        """200 once the model is loaded (it is loaded before the server starts)."""
        return Health(status="ok")

    @app.get("/metadata")
    def metadata(rec: RecommenderDep, lim: LimitsDep) -> Metadata:
        return Metadata(**rec.metadata, limits=asdict(lim))

    @app.post("/recommend", responses=ERRORS)
    async def recommend(body: RecommendRequest, rec: RecommenderDep,
                        worker: WorkerDep) -> Recommendation:
        """Top k items after one history, best first."""
        query = rec.query(body.history, body.k, body.exclude_history)
        (answer,) = await worker.submit([query])
        return Recommendation(items=answer.items, scores=answer.scores)

    @app.post("/recommend/batch", responses=ERRORS)
    async def recommend_batch(body: BatchRequest, rec: RecommenderDep, worker: WorkerDep,
                              lim: LimitsDep) -> BatchResponse:
        """Top k items after each history, scored as one batch."""
        if len(body.histories) > lim.max_batch:
            raise BadRequest(f"{len(body.histories)} histories in one batch; the limit is "
                             f"{lim.max_batch}")
        queries = []
        for i, history in enumerate(body.histories):
            try:
                queries.append(rec.query(history, body.k, body.exclude_history))
            except BadRequest as exc:
                raise BadRequest(f"histories[{i}]: {exc}") from None
        answers = await worker.submit(queries)
        return BatchResponse(results=[Recommendation(items=a.items, scores=a.scores)
                                      for a in answers])

    return app


def _error(status: int, message: str, detail: object = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": jsonable_encoder(detail)},
                        status_code=status)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI reads a body as JSON when it says so or says nothing; other bodies it refuses.
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and not (kind == "application/json" or kind.endswith("+json")):
        return _error(415, f"send the body as JSON (Content-Type: application/json), "
                      f"not {kind}")
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = first.get("loc", ())
    if first.get("type") == "json_invalid":
        message = f"malformed JSON (at character {loc[-1]})"
    elif tuple(loc) == ("body",) and first.get("type") == "model_attributes_type":
        # Without a content type, a body that is not JSON reaches here as text.
        message = "the body must be a JSON object" + (
            "" if kind else " (sent without a content type: is it JSON?)")
    else:
        where = ".".join(str(p) for p in loc)
        message = f"{where}: {first.get('msg', 'invalid request')}"
    # The offending input can be the whole body; the message says enough.
    detail = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in errors]
    return _error(422, message + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                  detail)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    return _error(422, str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail), "detail": exc.detail},
                        status_code=exc.status_code, headers=exc.headers)


class BodyLimit:
    """ASGI middleware: read the whole body first and answer 413 when it is longer than
    ``max_bytes`` (declared or sent, chunked included), before any parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, f"the request body is over the limit of {self.max_bytes} bytes")
        await response(scope, receive, send)


class Admission:
    """ASGI middleware: at most ``max_in_flight`` recommendation requests (``POST
    /recommend...``) admitted and unanswered at a time; one more is answered 503 with
    ``Retry-After`` at once, before its body is read or parsed, so that shedding costs far
    less than serving and an admitted request waits behind at most ``max_in_flight`` others
    (docs/serving.md#overload). Health and metadata are always admitted."""

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_s: int) -> None:
        self.app, self.max_in_flight = app, max_in_flight
        self.in_flight = 0
        body = (b'{"error":"overloaded: ' + str(max_in_flight).encode()
                + b' requests in flight; retry later","detail":null}')
        self.headers = [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(retry_after_s).encode())]
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith("/recommend")):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await send({"type": "http.response.start", "status": 503, "headers": self.headers})
            await send({"type": "http.response.body", "body": self.body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

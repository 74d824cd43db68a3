"""HTTP serving of a bundle: a FastAPI app run by uvicorn (the ``serve`` extra).

```
recforge serve runs/adult_deepfm --host 127.0.0.1 --port 8000
curl -s localhost:8000/score -H 'content-type: application/json' -d '{"rows": [{"age": 39, ...}]}'
```

Endpoints: ``POST /score`` (raw rows -> probabilities), ``POST /rank`` (one user + candidates ->
candidates sorted by probability), ``POST /recommend`` (user rows -> top-K items, optional rerank;
bundles with a retrieval stage), ``GET /healthz``, ``GET /metadata`` and the OpenAPI schema at
``/openapi.json`` (``/docs`` for the browser). Request bodies are validated against the bundle's
features: a missing feature, a value of the wrong type, an integer beyond int64, a number beyond
float32 after scaling, ``k`` out of range or a batch larger than ``max_batch`` is a 422 whose
message (recforge's own wording) names the field; a body larger than ``max_body_bytes`` is a 413
answered before it is read. Client input never causes a 500: that is kept for the server's own
failures, whose traceback goes to the server log, never to the client. No error closes the
keep-alive connection.

Dynamic micro-batching: concurrent ``/score`` and ``/recommend`` requests are validated one by
one, then queued; a worker thread takes what is queued (waiting up to ``Batching.max_wait_ms``
for more, up to ``Batching.max_rows`` rows) and runs it as one ``Bundle.score_batch`` /
``Bundle.recommend_batch`` call, whose answers are handed back per request. A request's error
(e.g. an unknown column type) fails only that request. A batched answer equals the same request
answered alone up to float32 rounding (measured in docs/serving.md), not bit for bit.
"""

# No ``from __future__ import annotations``: FastAPI reads the request models' annotations at runtime.
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import numpy as np

from recforge.bundle import Bundle, RecommendQuery
from recforge.preprocess import Bucketize, Categorical, Numeric, ValueKind

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("recforge.serve")
MAX_K = 1000
MAX_BODY_BYTES = 4 * 2**20  # default request body limit: a full max_batch of wide rows fits easily
INT64 = 2**63
Q = TypeVar("Q")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Batching:
    """Dynamic micro-batching of concurrent requests.

    Args:
        max_rows: a batch takes queued requests while their rows (``rows`` of ``/score``,
            ``users`` of ``/recommend``) stay within this; a larger request runs alone.
            ``1`` turns batching off.
        max_wait_ms: how long after its arrival the first request of a batch may wait for
            others. Requests that come while a batch runs are queued anyway, so under load
            batches form without waiting; the wait only matters when the server is nearly idle.
    """

    max_rows: int = 256
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int) or self.max_rows < 1:
            raise ValueError(f"Batching.max_rows must be an int >= 1, got {self.max_rows!r}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 1000:
            raise ValueError(f"Batching.max_wait_ms must be a number in [0, 1000], got {wait!r}")


@dataclass
class _Pending(Generic[Q, R]):
    """A queued request, the future its handler awaits and when it arrived (event-loop time)."""

    request: Q
    future: "asyncio.Future[R]"
    arrived: float


class MicroBatcher(Generic[Q, R]):
    """Queues requests from the event loop and runs them in batches on one worker thread.

    Args:
        run: answers a batch of requests, one result or exception per request, in order.
        size: the rows of one request (what ``Batching.max_rows`` counts).
        settings: batch size and wait.
        name: names the worker thread.
    """

    def __init__(
        self,
        run: Callable[[list[Q]], Sequence[R | Exception]],
        size: Callable[[Q], int],
        settings: Batching,
        *,
        name: str,
    ) -> None:
        self._run, self._size, self.settings = run, size, settings
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"recforge-{name}")
        self._queue: asyncio.Queue[_Pending[Q, R]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._carry: _Pending[Q, R] | None = None
        self.batches = 0  # batches run so far
        self.requests = 0  # requests answered in them

    async def submit(self, request: Q) -> R:
        """The answer to ``request`` (its exception is raised here)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._queue is None:
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._serve())
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put_nowait(_Pending(request, future, loop.time()))
        return await future

    async def run_alone(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the worker thread, between batches (nothing it changes is read mid-batch)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        """Stop taking batches; the one running finishes on its thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _next_batch(self) -> list["_Pending[Q, R]"]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = self._carry if self._carry is not None else await self._queue.get()
        self._carry = None
        batch, rows = [first], self._size(first.request)
        deadline = first.arrived + self.settings.max_wait_ms / 1000  # a request waits at most this
        while rows < self.settings.max_rows:
            if self._queue.empty():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            n = self._size(item.request)
            if rows + n > self.settings.max_rows:
                self._carry = item  # starts the next batch
                break
            batch.append(item)
            rows += n
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._next_batch() if not p.future.done()]  # drop cancelled ones
            if not batch:
                continue
            self.batches += 1
            self.requests += len(batch)
            try:
                results = await loop.run_in_executor(self._executor, self._run, [p.request for p in batch])
            except Exception as e:  # the whole call failed: every request gets it
                results = [e] * len(batch)
            for p, result in zip(batch, results):
                if p.future.done():
                    continue
                if isinstance(result, Exception):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(result)


class _BodyTooLarge(Exception):
    pass


def _json_response(status: int, detail: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class _Guard:
    """The outermost layer of the app under Starlette's error middleware (pure ASGI).

    * Request bodies are limited to ``max_body_bytes``: a larger ``Content-Length`` is answered
      413 before a byte of the body is read (uvicorn discards the rest and keeps the connection),
      and a chunked body is read up to the limit and no further. Nothing is parsed beyond it.
    * An exception no handler answered is logged and answered 500 here, without re-raising:
      Starlette's own handler re-raises after answering, and the server then closes the
      keep-alive connection (other requests queued on it fail).
    """

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def answer(status: int, detail: str) -> None:
            for message in _json_response(status, detail):
                await send_tracked(message)

        limit_text = f"the request body exceeds the limit of {self.max_body_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await answer(400, "invalid Content-Length header")
                return
            if declared > self.max_body_bytes:
                await answer(413, limit_text)
                return
        try:
            receive = await self._buffered(receive)
        except _BodyTooLarge:
            await answer(413, limit_text)
            return
        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await answer(500, "internal server error")

    async def _buffered(self, receive: Any) -> Any:
        """Read the whole body (at most ``max_body_bytes``) and replay it to the app."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks = []
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the disconnect, when it comes

        return replay


def _by_recforge(exc: BaseException) -> bool:
    """Whether recforge itself raised ``exc`` (its message was written for users), rather than a
    library it calls (pyarrow, numpy, pandas), whose wording must not reach clients."""
    if type(exc).__module__.split(".")[0] in ("pyarrow", "numpy", "pandas"):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("recforge")


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    """``values``, or a ``ValueError`` naming the rows whose answer is not a finite number."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[:10].tolist()
        raise ValueError(
            f"{what}: the model's output is not a finite number for row(s) {rows}; their values lie "
            "far outside what the model was trained on"
        )
    return values


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"recforge serving needs the 'serve' extra ({e.name} is missing): pip install 'recforge[serve]'"
        ) from None


def _plain(v: object) -> object:
    """numpy scalars -> Python values for JSON."""
    return v.item() if isinstance(v, np.generic) else v


def _int64(value: object) -> object:
    if type(value) is int and not -INT64 <= value < INT64:
        raise ValueError("integer outside the int64 range [-2**63, 2**63 - 1]")
    return value


def _row_model(
    name: str, bundle: Bundle, stages: Sequence[str], required: Sequence[str] | None = None
) -> type:
    """A pydantic model of one raw row: one typed field per input column of the ``stages``'
    pipelines (``"ranking"``, ``"retrieval"``; a column both read is typed by the first)."""
    from pydantic import BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

    runs = [bundle.ranker if stage == "ranking" else bundle.retriever for stage in stages]
    specs: dict[str, tuple[Any, Any]] = {}
    for run in runs:
        if run is not None:
            for spec in run.pipeline.columns:
                specs.setdefault(spec.name, (run, spec))
    fields: dict[str, Any] = {}
    # Integers are int64 in the pipeline: a larger one is a 422 naming the field, never a 500.
    id_int = Annotated[StrictInt, BeforeValidator(_int64)]
    number = Annotated[StrictInt | StrictFloat, BeforeValidator(_int64)]
    for i, (run, spec) in enumerate(specs.values()):
        if isinstance(spec, Numeric | Bucketize):
            typ: Any = number | None  # missing values are filled (or bucketed as OOV) as in training
        elif isinstance(spec, Categorical):
            kind = run.pipeline.vocabulary(spec.name).kind
            typ = StrictStr if kind in (None, ValueKind.STR) else id_int
        else:  # list columns: "a|b|c" text or a JSON list
            typ = StrictStr | list[StrictStr | id_int]
        needed = required is None or spec.name in required
        default = ... if needed else None
        fields[f"f{i}"] = (typ if needed else typ | None, Field(default, alias=spec.name))
    return create_model(name, __config__=ConfigDict(extra="allow", populate_by_name=False), **fields)


def _rows(models: Sequence[Any]) -> list[dict[str, object]]:
    return [m.model_dump(by_alias=True, exclude_unset=True) for m in models]


def create_app(
    bundle: Bundle,
    *,
    batching: Batching = Batching(),
    max_body_bytes: int = MAX_BODY_BYTES,
    allow_add_items: bool = False,
) -> "FastAPI":
    """The FastAPI app serving ``bundle``; concurrent ``/score`` and ``/recommend`` requests are
    micro-batched as ``batching`` says; request bodies above ``max_body_bytes`` are answered 413
    unread. ``allow_add_items`` opens ``POST /items`` on a bundle that can take new items (TIGER):
    the catalogue changes, so it is off unless asked for."""
    _require_extra()
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be a positive int, got {max_body_bytes!r}")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, BeforeValidator, Field, StrictFloat, StrictInt, StrictStr

    from recforge._version import __version__

    max_batch = bundle.config.max_batch
    batchers: dict[str, MicroBatcher[Any, Any]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for b in batchers.values():
            await b.close()

    app = FastAPI(
        lifespan=lifespan,
        title="recforge",
        version=__version__,
        description=f"Serving {bundle.path.name}: "
        + ", ".join(
            s for s, r in (("ranking", bundle.ranker), ("retrieval", bundle.retriever)) if r is not None
        ),
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse({"detail": summary, "errors": errors}, status_code=422)

    @app.exception_handler(ValueError)
    @app.exception_handler(TypeError)
    @app.exception_handler(KeyError)
    @app.exception_handler(OverflowError)
    async def _bad_input(request: Request, exc: Exception) -> JSONResponse:
        # Raised while checking or encoding the request's values: the client's input is at fault.
        if not _by_recforge(exc):  # a library's message (pyarrow type names...) is not for clients
            log.warning("request refused by %s on %s: %r", type(exc).__name__, request.url.path, exc)
            detail = "a value in the request cannot be encoded for this model; check the values' types"
            return JSONResponse({"detail": detail}, status_code=422)
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return JSONResponse({"detail": str(message)}, status_code=422)

    app.add_middleware(_Guard, max_body_bytes=max_body_bytes)  # 413s and the 500 safety net

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        counts = {name: {"batches": b.batches, "requests": b.requests} for name, b in batchers.items()}
        settings = {"max_rows": batching.max_rows, "max_wait_ms": batching.max_wait_ms}
        return dict(bundle.metadata(), batching=dict(settings, **counts))

    if bundle.ranker is not None:
        RankRow = _row_model("RankingRow", bundle, ["ranking"])

        class ScoreRequest(BaseModel):
            rows: list[RankRow] = Field(min_length=1, max_length=max_batch)  # type: ignore[valid-type]

        class ScoreResponse(BaseModel):
            probabilities: list[float]

        scorer: MicroBatcher[list[dict[str, object]], np.ndarray] = MicroBatcher(
            lambda batch: bundle.score_batch(batch), len, batching, name="score"
        )
        batchers["score"] = scorer

        @app.post("/score", response_model=ScoreResponse)
        async def score(req: ScoreRequest) -> JSONResponse:
            """Click probabilities of raw rows (original column values; unseen values are OOV)."""
            probs = _finite(await scorer.submit(_rows(req.rows)), "rows")
            return JSONResponse({"probabilities": probs.tolist()})

        # /rank takes parts of rows: the user's columns, and candidate rows or plain item ids;
        # values are typed as in /score (a column may come from either side).
        PartRow = _row_model("PartialRankingRow", bundle, ["ranking"], required=[])
        item_id = Annotated[StrictInt, BeforeValidator(_int64)] | StrictStr | StrictFloat

        class RankRequest(BaseModel):
            user: PartRow  # type: ignore[valid-type]
            candidates: list[PartRow | item_id] = Field(min_length=1, max_length=max_batch)  # type: ignore[valid-type]

        class RankResponse(BaseModel):
            candidates: list[Any]
            scores: list[float]

        @app.post("/rank", response_model=RankResponse)
        def rank(req: RankRequest) -> RankResponse:
            """Candidates (item ids or item-side rows) for one user, best first."""
            user = _rows([req.user])[0]
            cands = [_rows([c])[0] if isinstance(c, BaseModel) else c for c in req.candidates]
            ranked = bundle.rank(user, cands)
            _finite(np.asarray(ranked.scores, dtype=np.float64), "candidates")
            return RankResponse(candidates=[_plain(c) for c in ranked.candidates], scores=ranked.scores)

    if bundle.can_recommend:
        # the reranker's columns too (e.g. a user's age): typed, optional (an item table may hold them)
        UserRow = _row_model(
            "UserRow", bundle, ["retrieval", "ranking"], required=bundle.required_user_columns()
        )

        class RecommendRequest(BaseModel):
            users: list[UserRow] = Field(min_length=1, max_length=max_batch)  # type: ignore[valid-type]
            k: int = Field(10, ge=1, le=MAX_K)
            exclude_seen: bool = True
            rerank: bool | None = None
            exclude: list[list[Any]] | None = None

        class Items(BaseModel):
            items: list[Any]
            scores: list[float]

        class RecommendResponse(BaseModel):
            results: list[Items]

        recommender: MicroBatcher[RecommendQuery, list[Any]] = MicroBatcher(
            lambda batch: bundle.recommend_batch(batch),
            lambda q: len(q.users),
            batching,
            name="recommend",
        )
        batchers["recommend"] = recommender

        @app.post("/recommend", response_model=RecommendResponse)
        async def recommend(req: RecommendRequest) -> JSONResponse:
            """Top-k items per user (original ids); reranked by the ranking model when present."""
            query = RecommendQuery(
                _rows(req.users), req.k, exclude_seen=req.exclude_seen, rerank=req.rerank, exclude=req.exclude
            )
            recs = await recommender.submit(query)
            _finite(np.asarray([float(np.sum(r.scores)) * 0.0 for r in recs]), "users")  # NaN/inf spreads
            results = [{"items": [_plain(i) for i in r.items], "scores": r.scores} for r in recs]
            return JSONResponse({"results": results})

        if allow_add_items:
            if not bundle.can_add_items:
                raise ValueError("allow_add_items: this bundle cannot take new items (a TIGER run can)")

            class NewItemsRequest(BaseModel):
                items: list[dict[str, Any]] = Field(min_length=1, max_length=max_batch)
                persist: bool = False

            class NewItemsResponse(BaseModel):
                items: list[Any]
                semantic_ids: list[list[int]]

            @app.post("/items", response_model=NewItemsResponse)
            async def add_items(req: NewItemsRequest) -> NewItemsResponse:
                """New items (raw id and content columns) get semantic IDs from their content and
                are recommended from the next request on; ``persist`` rewrites the run directory."""
                added = await recommender.run_alone(lambda: bundle.add_items(req.items, persist=req.persist))
                return NewItemsResponse(
                    items=[_plain(i) for i in added.items], semantic_ids=added.codes.tolist()
                )

    return app


def serve(
    bundle: Bundle,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    batching: Batching = Batching(),
    max_body_bytes: int = MAX_BODY_BYTES,
    allow_add_items: bool = False,
) -> None:
    """Run the app with uvicorn until interrupted."""
    _require_extra()
    import uvicorn

    app = create_app(
        bundle, batching=batching, max_body_bytes=max_body_bytes, allow_add_items=allow_add_items
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)

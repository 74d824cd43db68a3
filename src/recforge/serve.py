"""HTTP serving of a bundle: a FastAPI app run by uvicorn (the ``serve`` extra).

```
recforge serve runs/adult_deepfm --host 127.0.0.1 --port 8000
curl -s localhost:8000/score -H 'content-type: application/json' -d '{"rows": [{"age": 39, ...}]}'
```

Endpoints: ``POST /score`` (raw rows -> probabilities), ``POST /rank`` (one user + candidates ->
candidates sorted by probability), ``POST /recommend`` (user rows -> top-K items, optional rerank;
bundles with a retrieval stage), ``GET /healthz``, ``GET /metadata`` and the OpenAPI schema at
``/openapi.json`` (``/docs`` for the browser). Request bodies are validated against the bundle's
features: a missing feature, a value of the wrong type, ``k`` out of range or a batch larger than
``max_batch`` is a 422 whose message names the field. Any other failure is a generic 500; the
traceback goes to the server log, never to the client.
"""

# No ``from __future__ import annotations``: FastAPI reads the request models' annotations at runtime.
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recforge.bundle import Bundle
from recforge.preprocess import Categorical, Numeric, ValueKind

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("recforge.serve")
MAX_K = 1000


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


def _row_model(name: str, bundle: Bundle, stage: str, required: Sequence[str] | None = None) -> type:
    """A pydantic model of one raw row: one typed field per input column of ``stage``'s pipeline."""
    from pydantic import ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

    run = bundle.ranker if stage == "ranking" else bundle.retriever
    assert run is not None
    fields: dict[str, Any] = {}
    number = StrictInt | StrictFloat
    for i, spec in enumerate(run.pipeline.columns):
        if isinstance(spec, Numeric):
            typ: Any = number | None  # missing values are filled as in training
        elif isinstance(spec, Categorical):
            kind = run.pipeline.vocabulary(spec.name).kind
            typ = StrictStr if kind in (None, ValueKind.STR) else StrictInt
        else:  # list columns: "a|b|c" text or a JSON list
            typ = StrictStr | list[StrictStr | StrictInt]
        needed = required is None or spec.name in required
        default = ... if needed else None
        fields[f"f{i}"] = (typ if needed else typ | None, Field(default, alias=spec.name))
    return create_model(name, __config__=ConfigDict(extra="allow", populate_by_name=False), **fields)


def _rows(models: Sequence[Any]) -> list[dict[str, object]]:
    return [m.model_dump(by_alias=True, exclude_unset=True) for m in models]


def create_app(bundle: Bundle) -> "FastAPI":
    """The FastAPI app serving ``bundle``."""
    _require_extra()
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field

    from recforge import __version__

    max_batch = bundle.config.max_batch
    app = FastAPI(
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
    async def _bad_input(request: Request, exc: Exception) -> JSONResponse:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return JSONResponse({"detail": str(message)}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return bundle.metadata()

    if bundle.ranker is not None:
        RankRow = _row_model("RankingRow", bundle, "ranking")

        class ScoreRequest(BaseModel):
            rows: list[RankRow] = Field(min_length=1, max_length=max_batch)  # type: ignore[valid-type]

        class ScoreResponse(BaseModel):
            probabilities: list[float]

        @app.post("/score", response_model=ScoreResponse)
        def score(req: ScoreRequest) -> ScoreResponse:
            """Click probabilities of raw rows (original column values; unseen values are OOV)."""
            return ScoreResponse(probabilities=bundle.score(_rows(req.rows)).tolist())

        class RankRequest(BaseModel):
            user: dict[str, Any]
            candidates: list[Any] = Field(min_length=1, max_length=max_batch)

        class RankResponse(BaseModel):
            candidates: list[Any]
            scores: list[float]

        @app.post("/rank", response_model=RankResponse)
        def rank(req: RankRequest) -> RankResponse:
            """Candidates (item ids or item-side rows) for one user, best first."""
            ranked = bundle.rank(req.user, req.candidates)
            return RankResponse(candidates=[_plain(c) for c in ranked.candidates], scores=ranked.scores)

    if bundle.retriever is not None and bundle.index is not None:
        UserRow = _row_model("UserRow", bundle, "retrieval", required=bundle.user_columns())

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

        @app.post("/recommend", response_model=RecommendResponse)
        def recommend(req: RecommendRequest) -> RecommendResponse:
            """Top-k items per user (original ids); reranked by the ranking model when present."""
            recs = bundle.recommend(
                _rows(req.users), req.k, exclude_seen=req.exclude_seen, rerank=req.rerank, exclude=req.exclude
            )
            return RecommendResponse(
                results=[Items(items=[_plain(i) for i in r.items], scores=r.scores) for r in recs]
            )

    return app


def serve(bundle: Bundle, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted."""
    _require_extra()
    import uvicorn

    uvicorn.run(create_app(bundle), host=host, port=port, log_level=log_level)

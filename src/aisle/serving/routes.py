"""The /v1 API: behaviour and products in, search and recommendations out, erasure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from aisle.domain import RecordKind
from aisle.errors import InputError
from aisle.serving import schemas
from aisle.serving.auth import require
from aisle.serving.recommend import Answer, recommend, similar
from aisle.serving.service import Service, parse_batch

router = APIRouter(prefix="/v1")

Id = Annotated[str, Path(min_length=1, max_length=256)]
Count = Annotated[int, Query(ge=1, le=200, description="How many items.")]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _json(payload: Any, status: int = 200) -> Response:
    from aisle.serving.app import json_response  # noqa: PLC0415 (app imports this module)

    return json_response(payload, status)


async def _body(request: Request) -> bytes:
    return await request.body()


# -- behaviour ---------------------------------------------------------------------------------
@router.post("/events", tags=["ingest"], dependencies=[require("ingest")],
             response_model=schemas.BatchAnswer, openapi_extra=schemas.EVENTS_BODY)  # fmt: skip
async def post_events(request: Request) -> Response:
    """A batch of shopper events (a JSON array, `{"events": [...]}` or NDJSON): the same
    checks, privacy and storage as a file import, idempotent by event id. Good events are
    kept even when others are bad; the answer counts each fate and names rejected records
    by their 1-based position."""
    service = _service(request)
    body = await _body(request)
    raw = parse_batch(body, request.headers.get("content-type", ""), "POST /v1/events", "events")
    if raw.frame.height + raw.malformed.height > service.settings.serve.max_batch_events:
        raise InputError(f"more than {service.settings.serve.max_batch_events} events in one "
                         "batch; split it", source="POST /v1/events", field="events")  # fmt: skip
    outcome = await run_in_threadpool(service.ingest, RecordKind.EVENTS, raw)
    return _json(outcome.to_json(), 200)


# -- products ----------------------------------------------------------------------------------
async def _put_products(service: Service, raw: Any) -> Response:
    outcome = await run_in_threadpool(service.ingest, RecordKind.PRODUCTS, raw)
    if outcome.accepted_items:
        documents = await run_in_threadpool(service.product_documents, outcome.accepted_items)
        service.apply_products(documents)  # on the loop: no search sees half of it
    return _json(outcome.to_json())


@router.put("/products/{item_id}", tags=["catalog"], dependencies=[require("ingest")],
            response_model=schemas.BatchAnswer, openapi_extra=schemas.PRODUCT_BODY)  # fmt: skip
async def put_product(request: Request, item_id: Id) -> Response:
    """Add or change one product: searchable and recommendable (from its text) at once."""
    import orjson  # noqa: PLC0415

    service = _service(request)
    body = await _body(request)
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InputError(f"the body is not valid JSON: {error}", source="PUT /v1/products",
                         field="body") from error  # fmt: skip
    if not isinstance(record, dict):
        raise InputError("expected one product object", source="PUT /v1/products", field="body")
    record["item_id"] = item_id
    raw = parse_batch(orjson.dumps([record]), "application/json", "PUT /v1/products", "products")
    return await _put_products(service, raw)


@router.put("/products", tags=["catalog"], dependencies=[require("ingest")],
            response_model=schemas.BatchAnswer, openapi_extra=schemas.PRODUCTS_BODY)  # fmt: skip
async def put_products(request: Request) -> Response:
    """Add or change many products (a JSON array, `{"products": [...]}` or NDJSON)."""
    service = _service(request)
    body = await _body(request)
    content_type = request.headers.get("content-type", "")
    raw = parse_batch(body, content_type, "PUT /v1/products", "products")
    return await _put_products(service, raw)


@router.delete("/products/{item_id}", tags=["catalog"], dependencies=[require("ingest")],
               response_model=schemas.Removed)  # fmt: skip
async def delete_product(request: Request, item_id: Id) -> Response:
    """Take a product off sale: out of search at once, out of the next training."""
    return await _remove(_service(request), [item_id])


@router.post("/products/delete", tags=["catalog"], dependencies=[require("ingest")],
             response_model=schemas.Removed)  # fmt: skip
async def delete_products(request: Request, body: schemas.ItemIds) -> Response:
    """Take many products off sale."""
    return await _remove(_service(request), body.item_ids)


async def _remove(service: Service, item_ids: list[str]) -> Response:
    removed = await run_in_threadpool(service.remove_products, item_ids)
    service.apply_removals(removed)
    return _json({"removed": removed, "unknown": [i for i in item_ids if i not in removed]})


# -- search ------------------------------------------------------------------------------------
def _filters(given: list[str] | None) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for pair in given or []:
        key, sep, value = pair.partition(":")
        if not sep or not key or not value:
            raise InputError(f"filter {pair!r} is not field:value", source="GET /v1/search",
                             field="filter")  # fmt: skip
        found.setdefault(key.strip(), []).append(value.strip())
    return found


@router.get("/search", tags=["search"], dependencies=[require("read")],
            response_model=schemas.SearchAnswer)  # fmt: skip
async def search(
    request: Request,
    *,
    q: Annotated[str, Query(min_length=1, max_length=500, description="What the shopper typed.")],
    user: Annotated[str | None, Query(max_length=256, description="Personalise for them.")] = None,
    filter: Annotated[  # the API's word
        list[str] | None, Query(description="field:value, e.g. brand:Sony (repeatable).")
    ] = None,
    facets: Annotated[str, Query(max_length=200, description="e.g. brand,category,price")] = "",
    sort: Annotated[str | None, Query(description="price, -price, popularity, newest")] = None,
    price_min: Annotated[float | None, Query(ge=0)] = None,
    price_max: Annotated[float | None, Query(ge=0)] = None,
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 10,
    explain: bool = False,
) -> Response:
    """Products for a query: hybrid retrieval, learnt ranking, personalised with a user."""
    from aisle.serving.searching import search_page  # noqa: PLC0415

    payload = search_page(_service(request), q, user=user, filters=_filters(filter),
                          facets=facets, sort=sort, price_min=price_min, price_max=price_max,
                          page=page, per_page=per_page, explain=explain)  # fmt: skip
    return _json(payload)


@router.get("/suggest", tags=["search"], dependencies=[require("read")],
            response_model=schemas.Suggestions)  # fmt: skip
async def suggest(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Typed so far.")],
    n: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Response:
    """Autocomplete from product titles and popular past queries."""
    suggester = _service(request).live.suggester
    found = suggester.suggest(q, n=n) if suggester is not None else []
    return _json({"suggestions": [{"text": s.text, "source": s.source, "weight": s.weight}
                                  for s in found]})  # fmt: skip


# -- recommendations ---------------------------------------------------------------------------
def _items(service: Service, answer: Answer, pseudonym: str | None, explain: bool) -> list[Any]:
    served = service.live.models.get(answer.model)
    rows: list[dict[str, Any]] = []
    for found in answer.items:
        row = service.live.listed(found.item_id, found.score)
        if explain:
            row["because"] = _because(served, answer, found.item_id, pseudonym)
        rows.append(row)
    return rows


def _because(served: Any, answer: Answer, item_id: str, pseudonym: str | None) -> Any:
    if item_id in answer.cold:
        return {"kind": "text", "items": [], "note": "new product, close in text to your items"}
    if answer.source == "trending":
        return {"kind": "trending", "items": []}
    if served is None or pseudonym is None or not served.model.knows(pseudonym):
        return {"kind": answer.source, "items": []}
    why = served.model.explain(pseudonym, item_id)
    return {"kind": why.kind, "items": [{"item_id": i, "weight": w} for i, w in why.because]}


@router.get("/users/{user_id}/recommendations", tags=["recommendations"],
            dependencies=[require("read")],
            response_model=schemas.RecommendationAnswer)  # fmt: skip
async def recommendations(
    request: Request,
    user_id: Id,
    *,
    n: Count = 10,
    item: Annotated[str | None, Query(max_length=256, description="The page's item.")] = None,
    model: Annotated[str | None, Query(max_length=64, description="Override the model.")] = None,
    explain: bool = False,
) -> Response:
    """The customer's recommendations, following what they did a moment ago; the answer
    names the model version and, in an experiment, the variant."""
    service = _service(request)
    pseudonym = service.pseudonym(user_id)
    name, variant = service.model_for("recommendations", pseudonym, model)
    answer = recommend(service.live, service.activity, name, pseudonym, n, context=item)
    if variant is not None:
        service.exposures.record(variant, pseudonym, "recommendations",
                                 [r.item_id for r in answer.items])  # fmt: skip
    return _json({
        "model": answer.model, "version": answer.version, "source": answer.source,
        "variant": None if variant is None else variant.to_json(),
        "items": _items(service, answer, pseudonym, explain),
    })  # fmt: skip


@router.get("/items/{item_id}/similar", tags=["recommendations"],
            dependencies=[require("read")],
            response_model=schemas.RecommendationAnswer)  # fmt: skip
async def similar_items(
    request: Request,
    item_id: Id,
    n: Count = 10,
    model: Annotated[str | None, Query(max_length=64, description="Override the model.")] = None,
) -> Response:
    """Items like this one; a product newer than the model is matched by its text."""
    service = _service(request)
    name = model or service.settings.serve.recommender
    answer = similar(service.live, name, item_id, n)
    return _json({"model": answer.model, "version": answer.version, "source": answer.source,
                  "variant": None, "items": _items(service, answer, None, False)})  # fmt: skip


# -- customers ---------------------------------------------------------------------------------
@router.delete("/users/{user_id}", tags=["privacy"], dependencies=[require("admin")],
               response_model=schemas.ErasureAnswer)  # fmt: skip
async def erase_user(request: Request, user_id: Id) -> Response:
    """Right to erasure: the customer's records, snapshots and model state, at once."""
    service = _service(request)
    receipt, pseudonym = await run_in_threadpool(service.erase, user_id)
    service.forget_in_live(pseudonym)
    return _json(receipt)


# -- operations --------------------------------------------------------------------------------
@router.post("/admin/reload", tags=["operations"], dependencies=[require("admin")],
             response_model=schemas.Reloaded)  # fmt: skip
async def reload(request: Request) -> Response:
    """Swap in the registry's production models now (no request fails meanwhile)."""
    service = _service(request)
    versions = await run_in_threadpool(service.reload_models)
    return _json({"models": versions, "swaps": service.swaps})


@router.post("/admin/retrain", tags=["operations"], dependencies=[require("admin")],
             response_model=schemas.Retrained)  # fmt: skip
async def retrain(
    request: Request,
    model: Annotated[str | None, Query(max_length=64, description="One [all served].")] = None,
) -> Response:
    """Retrain now, behind the validation gate; a version that passes goes live."""
    service = _service(request)
    outcomes = await run_in_threadpool(service.retrain, [model] if model else None)
    return _json({"outcomes": outcomes, "models": service.live.versions()})

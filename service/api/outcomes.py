"""/v1/outcomes: late labels and conversions, joined to predictions by request_id (sdk scope)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from flask import g
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field, RootModel

from service.api.auth import BEARER, requires
from service.api.predict import RequestId
from service.api.schemas import MAX_MAGNITUDE, EventTime, Strict, problem_responses
from service.errors import ServiceUnavailable
from service.runtime import runtime

bp = APIBlueprint("outcomes", __name__, url_prefix="/v1/outcomes",
                  abp_tags=[Tag(name="outcomes", description="Report what actually happened")], abp_security=BEARER)


class OutcomeIn(Strict):
    request_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$")
    value: float = Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False,
                         description="label (classification), value (regression) or 0/1 conversion; |value| <= 1e12")
    at: EventTime | None = Field(default=None, description="when it happened (ISO 8601 with a time zone, "
                                                           "2000-01-01 to a day from now); default now")


class OutcomeBatch(RootModel[list[OutcomeIn]]):
    root: list[OutcomeIn] = Field(min_length=1, max_length=1000)


class OutcomeResult(BaseModel):
    request_id: str
    status: Literal["accepted", "duplicate", "conflict", "queued", "rejected"]
    detail: str | None = None


class OutcomeResponse(BaseModel):
    accepted: int
    duplicates: int
    conflicts: int
    queued: int
    rejected: int = Field(default=0, description="outcomes for a request id the service issued to another API key")
    results: list[OutcomeResult]


@bp.post("", responses={200: OutcomeResponse, **problem_responses(401, 403, 422, 503)})
@requires("sdk")
def record_outcomes(body: OutcomeBatch):
    """Record outcomes in a batch.  Idempotent: the same outcome twice is stored once; a different
    value for a known request_id is a per-item conflict while the rest are accepted.  While the
    database is down outcomes are spooled to disk ("queued") and stored when it is back."""
    from service.eventlog import OutcomeEvent, event_log
    from service.requestids import request_ids
    from service.store.events import ingest_timeouts, insert_outcomes

    rt = runtime()
    received = datetime.now(timezone.utc)
    ids, key = request_ids(rt), g.api_key
    # an id the service issued is bound to the key it was issued to (admin keys may post for any)
    foreign = {o.request_id for o in body.root if key.scope != "admin" and ids.issued_to(o.request_id, key.id) is False}
    events = [OutcomeEvent(o.request_id, o.value, o.at or received, received) for o in body.root if o.request_id not in foreign]
    rejected = [o.request_id for o in body.root if o.request_id in foreign]
    try:
        with rt.db.unit_of_work() as session:
            ingest_timeouts(session, statement_ms=rt.settings.ingest_statement_timeout_ms,
                            lock_ms=rt.settings.ingest_lock_timeout_ms)
            statuses = insert_outcomes(session, events)
    except ServiceUnavailable:
        # "queued" is a promise: the outcomes are on disk (fsynced) before we say so, or we say 503
        if not event_log(rt).spool_now(events):
            raise ServiceUnavailable("the database is unreachable and the spool cannot be written: "
                                     "the outcomes were not stored; retry shortly") from None
        statuses = ["queued"] * len(events)
    stored = iter(statuses)  # one per event, in order
    results, statuses = [], []
    for o in body.root:
        status = "rejected" if o.request_id in foreign else next(stored)
        item = {"request_id": o.request_id, "status": status}
        if status == "conflict":
            item["detail"] = "a different value is already recorded for this request_id"
        elif status == "rejected":
            item["detail"] = "this request_id was issued to another API key: post its outcome with that key"
        results.append(item)
        statuses.append(status)
    count = lambda s: sum(1 for x in statuses if x == s)  # noqa: E731
    return {"accepted": count("accepted"), "duplicates": count("duplicate"), "conflicts": count("conflict"),
            "queued": count("queued"), "rejected": len(rejected), "results": results}

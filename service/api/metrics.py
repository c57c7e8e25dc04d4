"""/v1/metrics: every process's counters, added up, in Prometheus text format (read scope)."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from service.api.auth import BEARER, requires
from service.api.schemas import problem_responses
from service.runtime import runtime

bp = APIBlueprint("metrics", __name__, url_prefix="/v1/metrics",
                  abp_tags=[Tag(name="metrics", description="Operational counters")], abp_security=BEARER)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("", responses={200: {"description": "Prometheus text exposition format 0.0.4",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **problem_responses(401, 403)})
@requires("read")
def metrics():
    """Counters of every web worker and shadow scorer on this data directory, added up: predictions,
    fallbacks, shadow jobs sampled / scored / failed / dropped and the backlog waiting in the
    database, the event log's recorded / written / spooled / replayed / dead-lettered events and
    its queue, and the prediction cache.  Processes publish every FRUGAL_METRICS_INTERVAL_S; this
    one's own counters are current.  Then the labelled families (per experiment, arm and model),
    latency and inference-time histograms and HTTP request metrics of every process of this server
    (docs/deploy.md lists them)."""
    from service.errors import ServiceUnavailable
    from service import prometheus
    from service.metrics import collect, exposition, publisher
    from service.store.shadow import backlog

    rt = runtime()
    own = publisher(rt)
    own.publish()
    totals, live = collect(rt.settings.data_dir / "metrics")
    try:
        with rt.db.unit_of_work() as session:
            totals["frugal_shadow_backlog"] = backlog(session)
    except ServiceUnavailable:
        pass  # the database is down: the other counters still answer
    # The counters above (unchanged names and meaning), then the labelled metrics and histograms.
    body = exposition(totals, live) + prometheus.exposition().decode()
    return Response(body, mimetype=None, content_type=PROMETHEUS_TEXT)

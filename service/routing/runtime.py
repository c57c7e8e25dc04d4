"""Wire the router into a process's Runtime: catalog, onnxruntime sessions, cache, event log."""

from __future__ import annotations

from typing import Any

from service.routing.catalog import Catalog, ModelSpec
from service.routing.router import Router
from service.runtime import Runtime


def catalog(rt: Runtime) -> Catalog:
    return rt.lazy("catalog", lambda: Catalog(rt.db, rt.settings))


def model_runner(rt: Runtime):
    """(spec, rows, use_cache) -> (outputs [(prediction, confidence)], inference ms, cache hits)."""
    from service.inference.cache import PredictionCache
    from service.inference.sessions import SessionPool

    pool = rt.lazy("sessions", lambda: SessionPool(rt.settings))
    cache = rt.lazy("prediction_cache", lambda: PredictionCache(rt.settings.prediction_cache_size, rt.settings.prediction_cache_ttl_s))

    def run(spec: ModelSpec, rows: list[Any], use_cache: bool):
        # keyed by the registered model, not the file's bytes: the same file registered again under
        # another task has its own decoder and its own cached answers
        key = f"model-{spec.id}"
        model = pool.get(key, spec.path, task=spec.task, signature=spec.signature)
        if not use_cache:
            result = model.run(rows)
            return [(o.prediction, o.confidence) for o in result.outputs], result.inference_ms, [False] * len(rows)
        outputs: list[Any] = [None] * len(rows)
        hits = [False] * len(rows)
        misses = []
        for i, row in enumerate(rows):
            cached = cache.get(key, row)
            if cached is not None:
                outputs[i], hits[i] = cached, True
            else:
                misses.append(i)
        inference_ms = 0.0
        if misses:
            result = model.run([rows[i] for i in misses])
            inference_ms = result.inference_ms
            for i, o in zip(misses, result.outputs):
                outputs[i] = (o.prediction, o.confidence)
                cache.put(key, rows[i], outputs[i])
        return outputs, inference_ms, hits

    return run


def router(rt: Runtime) -> Router:
    def build() -> Router:
        from service.eventlog import PredictionEvent, event_log
        from service.prometheus import observe_prediction

        log = event_log(rt)
        known = catalog(rt)

        def record(events: list[Any]) -> bool:
            names, refs = known.labels()
            for e in events:
                if isinstance(e, PredictionEvent):
                    observe_prediction(e, names.get(e.experiment_id, str(e.experiment_id)), refs.get(e.model_id, str(e.model_id)))
            return log.record_many(events)

        r = Router(known, rt.settings, model_runner(rt), record)
        rt.on_close(r.close)
        return r

    return rt.lazy("router", build)

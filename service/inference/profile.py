"""Measure a model on this host: latency, throughput, memory, CPU cost and (given labels) quality.

The measured CPU time per prediction, times the configured price per core-hour, is the model's cost
per 1,000 predictions when none was declared.  Measurements are bounded by ``budget_s``.
"""

from __future__ import annotations

import csv
import io
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import ValidationFailed, field_error
from service.inference.features import build_feed
from service.inference.sessions import LoadedModel, new_session

BATCH_SIZES = (1, 32, 256)


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_labelled_csv(text: str, feature_names: list[str]) -> tuple[list[list[float]], np.ndarray]:
    """Rows in feature order and the labels, from CSV text with a header and a 'label' column."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [n for n in feature_names if n not in header]
    if "label" not in header or missing:
        problem = "has no 'label' column" if "label" not in header else f"lacks feature columns {missing[:5]}"
        raise ValidationFailed("the labelled CSV does not fit the model", errors=[field_error("labelled_csv", problem)])
    rows, labels = [], []
    for i, record in enumerate(reader):
        try:
            rows.append([float(record[n]) for n in feature_names])
            labels.append(float(record["label"]))
        except (TypeError, ValueError):
            raise ValidationFailed("the labelled CSV has a non-numeric value", errors=[field_error(
                "labelled_csv", f"line {i + 2}: every feature and the label must be numbers")]) from None
    if not rows:
        raise ValidationFailed("the labelled CSV has no rows", errors=[field_error("labelled_csv", "no data rows")])
    return rows, np.asarray(labels)


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 95, 99)}


def profile_model(path: Path | str, task: str, *, labelled_csv: str | Path | None = None, price_per_core_hour: float = 0.05,
                  budget_s: float = 5.0, signature: dict[str, Any]) -> dict[str, Any]:
    """Profile one model on this host in about ``budget_s`` seconds (plus one pass over the CSV).

    Single-row latency percentiles in ms, end to end (``single_row_latency_ms``: validate, feed,
    run, decode) and inside ``session.run`` (``single_row_inference_ms``); rows/s at batch 1, 32
    and 256; the resident memory the session adds (MB, sampled peak); file size; CPU ms per
    single-row ``session.run`` (process time, so onnxruntime's threads count) and the cost per
    1,000 predictions at ``price_per_core_hour``; with a labelled CSV (feature columns and
    ``label``), accuracy (classification) or RMSE (regression).
    """
    if not budget_s > 0:
        raise ValidationFailed("invalid profiling budget", errors=[field_error("budget_s", "must be > 0 seconds")])
    path = Path(path)
    rss_before = _rss_mb()
    load_started = time.perf_counter()
    model = LoadedModel(new_session(path), task, signature)
    load_ms = (time.perf_counter() - load_started) * 1000
    rss_peak = _rss_mb()

    if isinstance(labelled_csv, Path):
        labelled_csv = labelled_csv.read_text()
    if labelled_csv:
        rows, labels = parse_labelled_csv(labelled_csv, signature["feature_names"])
    else:
        rng = np.random.default_rng(0)
        n_features = signature.get("n_features") or len(signature["feature_names"])
        rows, labels = rng.normal(size=(512, n_features)).tolist(), None

    model.run(rows[:1])  # warm-up
    per_phase = budget_s / 4
    # Single rows: latency end to end (validate, feed, run, decode) and of session.run alone; CPU
    # time is counted inside session.run only, as the router charges a prediction's inference_ms.
    single: list[float] = []
    inside: list[float] = []
    cpu_inside = 0.0
    feeds = [build_feed(signature, [row]) for row in rows[:256]]
    deadline = time.perf_counter() + per_phase
    i = 0
    while time.perf_counter() < deadline or len(single) < 20:
        t = time.perf_counter()
        model.run([rows[i % len(rows)]])
        single.append((time.perf_counter() - t) * 1000)
        feed = feeds[i % len(feeds)]
        c, t = time.process_time(), time.perf_counter()
        model.session.run(None, feed)
        inside.append((time.perf_counter() - t) * 1000)
        cpu_inside += time.process_time() - c
        i += 1
        if len(single) >= 20_000:
            break
    cpu_ms_per_prediction = cpu_inside * 1000 / len(inside)

    throughput: dict[str, float] = {}
    for size in BATCH_SIZES:
        batch = [rows[k % len(rows)] for k in range(size)]
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < per_phase / len(BATCH_SIZES) or done == 0:
            model.run(batch)
            done += size
        throughput[str(size)] = round(done / (time.perf_counter() - started), 1)
        rss_peak = max(rss_peak, _rss_mb())

    profile: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "threads": 1},
        "file_size_bytes": path.stat().st_size,
        "load_ms": round(load_ms, 2),
        "memory_mb": round(max(rss_peak - rss_before, 0.0), 2),
        "single_row_latency_ms": _percentiles(single),
        "single_row_inference_ms": _percentiles(inside),
        "single_row_samples": len(single),
        "rows_per_s": throughput,
        "cpu_ms_per_prediction": round(cpu_ms_per_prediction, 5),
        "cost_per_1k": cpu_ms_per_prediction / 3_600_000 * price_per_core_hour * 1000,
        "price_per_core_hour": price_per_core_hour,
    }
    if labels is not None:
        outputs = []
        for start in range(0, len(rows), 256):
            outputs.extend(model.run(rows[start:start + 256]).outputs)
        predicted = np.asarray([float(o.prediction) for o in outputs])
        if task == "regression":
            profile["rmse"] = float(np.sqrt(np.mean((predicted - labels) ** 2)))
        else:
            profile["accuracy"] = float(np.mean(predicted == labels))
        profile["labelled_rows"] = len(rows)
    return profile

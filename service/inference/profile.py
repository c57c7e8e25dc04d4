"""Measure a model on this host: latency, throughput, memory, CPU cost and (given labels) quality.

``profile_in_fresh_process`` (what ``frugal models bench`` and ``POST /v1/models/{id}/benchmark`` run)
measures in a new Python process, so the memory figure is the model's own increment over a warmed-up
onnxruntime, whichever process asked, and no other thread's CPU time counts.  The CPU time per
prediction is timed as serving times it (``service.inference.sessions.inference_clock``); priced at
the configured core-hour it is the benchmark's cost per 1,000 predictions, a figure for comparing
models (``frugal models compare``): rows in an experiment are charged their own measured time
(``service.registry.prediction_cost``).  Measurements are bounded by ``budget_s``.
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

from service.errors import ServiceUnavailable, ValidationFailed, field_error
from service.inference.features import build_feed
from service.inference.sessions import LoadedModel, inference_clock, new_session

BATCH_SIZES = (1, 32, 256)
MAX_SAMPLES = 20_000


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_data_csv(text: str, feature_names: list[str], *, field: str = "data_csv",
                   need_labels: bool = False) -> tuple[list[list[float]], np.ndarray | None]:
    """Rows in feature order, and the labels when the CSV has a 'label' column (None otherwise), from
    CSV text with a header.  ``field`` names the input in errors; ``need_labels`` refuses a CSV
    without labels."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [n for n in feature_names if n not in header]
    labelled = "label" in header
    if (need_labels and not labelled) or missing:
        problem = "has no 'label' column" if need_labels and not labelled else f"lacks feature columns {missing[:5]}"
        raise ValidationFailed(f"the {'labelled ' if need_labels else ''}CSV does not fit the model",
                               errors=[field_error(field, problem)])
    rows, labels = [], []
    for i, record in enumerate(reader):
        try:
            rows.append([float(record[n]) for n in feature_names])
            if labelled:
                labels.append(float(record["label"]))
        except (TypeError, ValueError):
            raise ValidationFailed("the CSV has a non-numeric value", errors=[field_error(
                field, f"line {i + 2}: every feature{' and the label' if labelled else ''} must be a number")]) from None
    if not rows:
        raise ValidationFailed("the CSV has no rows", errors=[field_error(field, "no data rows")])
    return rows, np.asarray(labels) if labelled else None


def parse_labelled_csv(text: str, feature_names: list[str]) -> tuple[list[list[float]], np.ndarray]:
    """Rows in feature order and the labels, from CSV text with a header and a 'label' column."""
    rows, labels = parse_data_csv(text, feature_names, field="labelled_csv", need_labels=True)
    assert labels is not None
    return rows, labels


def _warm_runtime() -> None:
    """Load and run a one-node model, so onnxruntime's process-wide state (its environment, allocators,
    thread pools) exists before the baseline is read: the memory figure is then the model's own."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "warm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.zeros((1, 1), dtype=np.float32)})


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 95, 99)}


def profile_model(path: Path | str, task: str, *, labelled_csv: str | Path | None = None, price_per_core_hour: float = 0.05,
                  budget_s: float = 5.0, signature: dict[str, Any]) -> dict[str, Any]:
    """Profile one model on this host in about ``budget_s`` seconds (plus one pass over the CSV).

    Single-row latency percentiles in ms, end to end (``single_row_latency_ms``: validate, feed,
    run, decode) and inside ``session.run`` (``single_row_inference_ms``); rows/s at batch 1, 32
    and 256; the resident memory the model adds over a warmed-up onnxruntime (MB, sampled peak:
    meaningful in a fresh process, see ``profile_in_fresh_process``); file size; CPU ms per
    single-row ``session.run`` (the calling thread's CPU time, as serving measures it) and the cost per
    1,000 predictions at ``price_per_core_hour``; with a labelled CSV (feature columns and
    ``label``), accuracy (classification) or RMSE (regression).
    """
    if not budget_s > 0:
        raise ValidationFailed("invalid profiling budget", errors=[field_error("budget_s", "must be > 0 seconds")])
    path = Path(path)
    n_features = signature.get("n_features") or len(signature["feature_names"])
    if isinstance(labelled_csv, Path):
        labelled_csv = labelled_csv.read_text()
    if labelled_csv:
        rows, labels = parse_labelled_csv(labelled_csv, signature["feature_names"])
    else:
        rng = np.random.default_rng(0)
        rows, labels = rng.normal(size=(512, n_features)).tolist(), None
    # Everything the measurement itself holds (rows, feeds, batches, sample buffers) exists before the
    # baseline, and onnxruntime and the feature code have run once: the memory figure is the model's own.
    feeds = [build_feed(signature, [row]) for row in rows[:256]]
    batches = {size: [rows[k % len(rows)] for k in range(size)] for size in BATCH_SIZES}
    single = np.empty(MAX_SAMPLES)
    inside = np.empty(MAX_SAMPLES)
    _warm_runtime()
    rss_before = _rss_mb()
    load_started = time.perf_counter()
    model = LoadedModel(new_session(path), task, signature)
    load_ms = (time.perf_counter() - load_started) * 1000
    rss_peak = _rss_mb()

    cpu_clock = inference_clock(1)  # the one intra-op thread new_session uses: that thread's CPU time, as serving times it
    model.run(rows[:1])  # warm-up
    rss_peak = max(rss_peak, _rss_mb())
    per_phase = budget_s / 4
    # Single rows: latency end to end (validate, feed, run, decode) and of session.run alone; CPU
    # time is counted inside session.run only, as the router charges a prediction's inference_ms.
    cpu_inside = 0.0
    deadline = time.perf_counter() + per_phase
    i = 0
    while (time.perf_counter() < deadline or i < 20) and i < MAX_SAMPLES:
        t = time.perf_counter()
        model.run([rows[i % len(rows)]])
        single[i] = (time.perf_counter() - t) * 1000
        feed = feeds[i % len(feeds)]
        c, t = cpu_clock(), time.perf_counter()
        model.session.run(None, feed)
        inside[i] = (time.perf_counter() - t) * 1000
        cpu_inside += cpu_clock() - c
        i += 1
    single, inside = single[:i].tolist(), inside[:i].tolist()
    cpu_ms_per_prediction = cpu_inside * 1000 / len(inside)
    rss_peak = max(rss_peak, _rss_mb())

    throughput: dict[str, float] = {}
    for size in BATCH_SIZES:
        batch = batches[size]
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


FRESH_PROCESS_SLACK_S = 120.0   # a fresh process' start, imports and CSV pass, beyond the budget


def profile_in_fresh_process(path: Path | str, task: str, *, labelled_csv: str | None = None,
                             price_per_core_hour: float = 0.05, budget_s: float = 5.0,
                             signature: dict[str, Any]) -> dict[str, Any]:
    """``profile_model`` in a new Python process (``python -m service.inference.profile``), so every caller
    (the CLI, a web worker, a Celery worker) gets the same memory and CPU figures for the same model.

    Bad input is refused here, before a process is started, with the same 422 problems."""
    import json
    import subprocess
    import sys

    if not budget_s > 0:
        raise ValidationFailed("invalid profiling budget", errors=[field_error("budget_s", "must be > 0 seconds")])
    if labelled_csv:
        parse_labelled_csv(labelled_csv, signature["feature_names"])
    request = {"path": str(path), "task": task, "labelled_csv": labelled_csv, "price_per_core_hour": price_per_core_hour,
               "budget_s": budget_s, "signature": signature}
    try:
        done = subprocess.run([sys.executable, "-m", "service.inference.profile"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=budget_s + FRESH_PROCESS_SLACK_S, check=False)
    except subprocess.TimeoutExpired:
        raise ServiceUnavailable(f"benchmarking did not finish within {budget_s + FRESH_PROCESS_SLACK_S:.0f} s "
                                 "on this host; try again when it is less busy, or with a smaller budget_s") from None
    answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None
    if answer is None:
        raise ServiceUnavailable(f"the benchmark process failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    if "problem" in answer:
        raise ValidationFailed(answer["problem"]["detail"], errors=answer["problem"]["errors"])
    return answer["profile"]


def _main() -> int:
    import json
    import sys

    request = json.loads(sys.stdin.read())
    try:
        profile = profile_model(request["path"], request["task"], labelled_csv=request["labelled_csv"],
                                price_per_core_hour=request["price_per_core_hour"], budget_s=request["budget_s"],
                                signature=request["signature"])
    except ValidationFailed as exc:
        print(json.dumps({"problem": {"detail": exc.detail, "errors": exc.errors}}))
        return 0
    print(json.dumps({"profile": profile}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

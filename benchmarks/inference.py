"""What each demo model costs to serve on this host, and what Frugal adds around onnxruntime.

    .venv/bin/python benchmarks/inference.py [--budget-s 3]

For the demo champion (gradient boosting), the cheap challenger (logistic regression), the MLP and
the MLP's int8 version it prints file size, single-row latency p50/p95/p99, rows/s at batch sizes
1/32/256, CPU ms and cost per 1,000 predictions, and accuracy on the held-out split, all measured
by ``service.inference.profile`` in this run.  (The logistic regression has no MatMul weights, so
its int8 version is refused as a no-op; the MLP is the model int8 is for.)

Then two ratios, each against a baseline measured in the same run:
  * Frugal's in-process inference (feed validation + session.run + decoding) vs a bare
    ``session.run`` on a prepared float32 array, single row;
  * Frugal's single-model predict path over HTTP (Flask test client in process, auth, routing,
    event logging to the embedded SQLite store) vs the bare ``session.run``, single row.

The machines are small and shared: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _p(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def _time_single(fn, seconds: float) -> list[float]:
    fn()  # warm-up
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 50:
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def _http_path(model, rows: list[list[float]], seconds: float) -> list[float]:
    """Single-row POST /v1/predict through a Flask test client: a stopped experiment serves its champion."""
    from service import experiments, registry
    from service.app import create_app
    from service.auth import create_key
    from service.definition import ExperimentDefinition
    from service.migrate import upgrade
    from service.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="frugal-bench-inference-"))
    settings = load_settings({"FRUGAL_DATA_DIR": str(work), "FRUGAL_LOG_LEVEL": "WARNING"})
    app = create_app(settings)
    rt = app.extensions["frugal"]
    upgrade(rt.db.engine)
    first = registry.register(rt.db, rt.settings, model.path.read_bytes(), name=model.name, version="1", task=model.task)
    second = registry.register(rt.db, rt.settings, model.path.read_bytes(), name=model.name, version="2", task=model.task)
    experiments.create(rt.db, ExperimentDefinition.model_validate({
        "name": "bench", "mode": "ab", "champion": {"kind": "model", "model": first.ref},
        "challenger": {"kind": "model", "model": second.ref}, "metric": {"kind": "binary", "margin": 0.02}}), actor="bench")
    # left in draft: every request is answered by the champion, outside the experiment
    headers = {"Authorization": "Bearer " + create_key(rt.db, name="bench", scope="sdk").secret}
    client = app.test_client()
    i = 0

    def call():
        nonlocal i
        response = client.post("/v1/predict", headers=headers,
                               json={"experiment": "bench", "unit_id": f"u{i}", "features": rows[i % len(rows)]})
        i += 1
        if response.status_code != 200:
            raise SystemExit(f"predict answered {response.status_code}: {response.get_data(as_text=True)[:300]}")

    try:
        return _time_single(call, seconds)
    finally:
        rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=3.0, help="profiling budget per model (seconds)")
    args = parser.parse_args()

    import onnxruntime as ort

    from service.demo.models import build_demo_models
    from service.inference.profile import profile_model
    from service.inference.quantize import quantize_model
    from service.inference.sessions import LoadedModel, new_session
    from service.inference.signature import inspect_model

    models = build_demo_models(ROOT / ".frugal" / "demo-models")
    test_csv = (models["gbm"].path.parent / "test.csv").read_text()
    int8_path = Path(tempfile.mkdtemp(prefix="frugal-int8-")) / "mlp.int8.onnx"
    int8_path.write_bytes(quantize_model(models["mlp"].path.read_bytes(), "int8"))
    candidates = {"champion gbm": models["gbm"].path, "challenger logistic": models["logistic"].path,
                  "mlp": models["mlp"].path, "mlp int8": int8_path}

    print(f"onnxruntime {ort.__version__}, 1 intra-op thread, budget {args.budget_s:.1f} s per model\n")
    header = (f"{'model':<20} {'KB':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'run p50':>8} {'rows/s@1':>9} {'@32':>9} "
              f"{'@256':>9} {'CPU ms':>8} {'$/1k':>10} {'accuracy':>8}")
    print(header)
    print("-" * len(header))
    print("(p50/p95/p99: one row end to end in-process; run p50: inside session.run; CPU ms and $/1k: inside session.run)")
    profiles = {}
    for label, path in candidates.items():
        signature = inspect_model(path.read_bytes(), models["gbm"].feature_names).to_dict()
        p = profile_model(path, "binary", labelled_csv=test_csv, budget_s=args.budget_s, signature=signature)
        profiles[label] = p
        lat, tput = p["single_row_latency_ms"], p["rows_per_s"]
        print(f"{label:<20} {p['file_size_bytes'] / 1024:>7.1f} {lat['p50']:>8.3f} {lat['p95']:>8.3f} {lat['p99']:>8.3f} "
              f"{p['single_row_inference_ms']['p50']:>8.4f} "
              f"{tput['1']:>9.0f} {tput['32']:>9.0f} {tput['256']:>9.0f} {p['cpu_ms_per_prediction']:>8.4f} "
              f"{p['cost_per_1k']:>10.2e} {p['accuracy']:>8.4f}")

    champ, chall = profiles["champion gbm"], profiles["challenger logistic"]
    mlp, int8 = profiles["mlp"], profiles["mlp int8"]
    print("\nratios (same run)")
    print(f"  cost per 1k, challenger / champion:          {chall['cost_per_1k'] / champ['cost_per_1k']:.3f}")
    print(f"  single-row p50, champion / challenger:        "
          f"{champ['single_row_latency_ms']['p50'] / chall['single_row_latency_ms']['p50']:.2f}x")
    print(f"  rows/s at 256, challenger / champion:         {chall['rows_per_s']['256'] / champ['rows_per_s']['256']:.2f}x")
    print(f"  accuracy, challenger - champion:              {chall['accuracy'] - champ['accuracy']:+.4f}")
    print(f"  file size, mlp int8 / mlp:                    {int8['file_size_bytes'] / mlp['file_size_bytes']:.3f}")
    print(f"  cost per 1k, mlp int8 / mlp:                  {int8['cost_per_1k'] / mlp['cost_per_1k']:.3f}")
    print(f"  accuracy, mlp int8 - mlp:                     {int8['accuracy'] - mlp['accuracy']:+.4f}")

    # Frugal around onnxruntime: the champion, one row at a time.
    champion = models["gbm"]
    signature = inspect_model(champion.path.read_bytes(), champion.feature_names).to_dict()
    session = new_session(champion.path)
    rows = [[float(v) for v in line.split(",")[:-1]] for line in test_csv.splitlines()[1:]]
    prepared = [np.asarray([r], dtype=np.float32) for r in rows]
    k = 0

    def bare():
        nonlocal k
        session.run(None, {"input": prepared[k % len(prepared)]})
        k += 1

    loaded = LoadedModel(session, "binary", signature)

    def frugal():
        nonlocal k
        loaded.run([rows[k % len(rows)]])
        k += 1

    seconds = max(args.budget_s / 2, 0.5)
    base = _time_single(bare, seconds)
    inproc = _time_single(frugal, seconds)
    http = _http_path(champion, rows, seconds)
    print("\nchampion, single row: Frugal vs bare onnxruntime session.run (same run)")
    print(f"{'path':<44} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>10}")
    for label, samples in (("bare session.run (prepared float32 array)", base),
                           ("LoadedModel.run (validate, feed, decode)", inproc),
                           ("POST /v1/predict (test client, SQLite log)", http)):
        print(f"{label:<44} {_p(samples, 50):>8.3f} {_p(samples, 99):>8.3f} {_p(samples, 50) / _p(base, 50):>9.2f}x")


if __name__ == "__main__":
    main()

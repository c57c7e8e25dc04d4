"""The baseline for benchmarks/serving.py: the same model behind a bare Flask + onnxruntime endpoint,
with no routing, auth, validation or logging.  ``BARE_MODEL`` names the .onnx file."""

from __future__ import annotations

import os

import numpy as np
from flask import Flask, jsonify, request


def create_app() -> Flask:
    import onnxruntime as ort

    app = Flask("bare")
    state: dict = {}

    def session():
        if state.get("pid") != os.getpid():  # one session per worker, created after the fork
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            state["session"] = ort.InferenceSession(os.environ["BARE_MODEL"], options, providers=["CPUExecutionProvider"])
            state["input"] = state["session"].get_inputs()[0].name
            state["pid"] = os.getpid()
        return state["session"], state["input"]

    @app.post("/predict")
    def predict():
        sess, name = session()
        features = np.asarray([request.get_json()["features"]], dtype=np.float32)
        label, probabilities = sess.run(None, {name: features})
        probs = probabilities[0]
        confidence = max(probs.values()) if isinstance(probs, dict) else float(np.max(probs))
        return jsonify({"prediction": int(label[0]), "confidence": float(confidence)})

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app

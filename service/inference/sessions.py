"""One onnxruntime session per model version per process, created on first use.

gunicorn forks workers from a master that imported the app; a session created before the fork
must never be used after it (onnxruntime's thread pools do not survive a fork), so the pool
remembers the pid that created it and starts afresh in a child.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from service.inference.features import build_feed
from service.inference.outputs import Output, decode


@dataclass(frozen=True, slots=True)
class RunResult:
    outputs: list[Output]
    inference_ms: float          # time inside session.run for the whole batch, by the model's clock


def inference_clock(intra_op_threads: int) -> Callable[[], float]:
    """How ``session.run`` is timed, the same way in every process (request path, shadow scorer):
    with one intra-op thread onnxruntime runs on the calling thread, so that thread's CPU time
    (``time.thread_time``) is the model's compute, whatever else the host runs and however the
    process is scheduled; with more threads their work is not in the caller's CPU time, so wall time
    (``service.registry.compute_threads`` charges it for every thread)."""
    return time.thread_time if intra_op_threads == 1 else time.perf_counter


class LoadedModel:
    """``clock`` times ``session.run`` (``inference_clock``: CPU time of the calling thread with one
    intra-op thread, so time spent preempted does not count as the model's)."""

    def __init__(self, session, task: str, signature: dict[str, Any], clock: Callable[[], float] = time.perf_counter) -> None:
        self.session = session
        self.task = task
        self.signature = signature
        self.clock = clock
        self.pid = os.getpid()

    def warm(self) -> None:
        """One untimed run of a row of zeros: a new session's first run sets up its buffers and costs
        many times a later one, a loading cost no single request should be charged."""
        self.session.run(None, build_feed(self.signature, [[0.0] * len(self.signature["feature_names"])]))

    def run(self, rows: list[Any]) -> RunResult:
        """Score every row in one ``session.run`` (raises ValidationFailed for bad features)."""
        feed = build_feed(self.signature, rows)
        started = self.clock()
        results = self.session.run(None, feed)
        elapsed_ms = (self.clock() - started) * 1000.0
        return RunResult(decode(self.task, results, len(rows)), elapsed_ms)


def new_session(path: Path | str, intra_op_threads: int = 1, inter_op_threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class SessionPool:
    """Per-process map model key -> LoadedModel (thread-safe, fork-aware).

    The key names a registered model (the router uses its id), never just the file's digest: two
    registrations of the same bytes may differ in task, and so in how outputs are decoded."""

    def __init__(self, settings, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or inference_clock(settings.ort_intra_op_threads)
        self._intra = settings.ort_intra_op_threads
        self._inter = settings.ort_inter_op_threads
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # inherited across a fork: never reuse the parent's sessions
            self._models = {}
            self._lock = threading.Lock()
            self._pid = os.getpid()

    def get(self, key: str, path: Path | str, *, task: str, signature: dict[str, Any]) -> LoadedModel:
        self._check_fork()
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = LoadedModel(new_session(path, self._intra, self._inter), task, signature, self._clock)
                model.warm()
                self._models[key] = model
        return model

    def __len__(self) -> int:
        self._check_fork()
        return len(self._models)

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
    inference_ms: float          # wall time inside session.run for the whole batch


class LoadedModel:
    """``clock`` times ``session.run``: wall time (``perf_counter``) by default, for the web workers
    and the shadow scorers alike, so a challenger's shadow inference time is measured like the
    champion's.  Another clock (``time.thread_time``: with one intra-op thread onnxruntime runs on
    the calling thread) leaves out time spent preempted."""

    def __init__(self, session, task: str, signature: dict[str, Any], clock: Callable[[], float] = time.perf_counter) -> None:
        self.session = session
        self.task = task
        self.signature = signature
        self.clock = clock
        self.pid = os.getpid()

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

    def __init__(self, settings, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
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
                self._models[key] = model
        return model

    def __len__(self) -> int:
        self._check_fork()
        return len(self._models)

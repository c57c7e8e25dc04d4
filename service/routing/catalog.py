"""The router's view of experiments: compiled, cached per process, refreshed every few seconds.

The predict path must not query the database: it reads this catalog, which reloads every
experiment (one query per table) at most every ``ruleset_ttl_s`` seconds per process.  Lifecycle
changes therefore reach every web worker within that delay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import artifacts
from service.definition import ExperimentDefinition
from service.errors import ServiceUnavailable
from service.registry import model_path, parse_ref
from service.settings import Settings
from service.store import experiments as experiment_store
from service.store import models as model_store
from service.store.database import Database
from service.store.models import ModelRecord

log = logging.getLogger("frugal.catalog")


@dataclass(frozen=True)
class ModelSpec:
    id: int
    ref: str
    digest: str
    path: Path
    task: str
    cost_per_1k: float | None       # declared (added to the measured compute), else None
    signature: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class PolicySpec:
    kind: str
    primary: ModelSpec
    fallback: ModelSpec | None = None
    threshold: float | None = None

    def to_wire(self) -> dict[str, Any]:
        if self.kind == "model":
            return {"kind": "model", "model": self.primary.ref}
        return {"kind": "cascade", "cheap": self.primary.ref, "fallback": self.fallback.ref, "threshold": self.threshold}


@dataclass(frozen=True)
class CompiledExperiment:
    id: int
    name: str
    state: str
    mode: str
    unit: str
    phase: int
    salt: str
    weights_bp: tuple[int, int]
    coverage_bp: int
    served_arm: str
    champion: PolicySpec
    challenger: PolicySpec
    shadow_sample: float
    deadline_ms: float
    cache_champion: bool
    cache_challenger: bool
    revision: int

    def policy(self, arm: str) -> PolicySpec:
        return self.champion if arm == "champion" else self.challenger

    def to_wire(self) -> dict[str, Any]:
        """The SDK ruleset entry (docs/api.md)."""
        return {
            "id": self.id, "name": self.name, "state": self.state, "mode": self.mode, "unit": self.unit,
            "phase": self.phase, "salt": self.salt, "coverage_bp": self.coverage_bp,
            "arms": [
                {"name": "champion", "weight_bp": self.weights_bp[0], "policy": self.champion.to_wire()},
                {"name": "challenger", "weight_bp": self.weights_bp[1], "policy": self.challenger.to_wire()},
            ],
            "served_arm": self.served_arm,
        }


def _spec(record: ModelRecord, settings: Settings) -> ModelSpec:
    # only the declared cost: a benchmark profile never sets what a row costs (service.registry.prediction_cost)
    return ModelSpec(record.id, record.ref, record.digest, model_path(settings, record.digest), record.task,
                     record.declared_cost_per_1k, record.signature)


def _policy(raw: dict[str, Any], by_ref: dict[str, ModelSpec]) -> PolicySpec:
    if raw["kind"] == "model":
        return PolicySpec("model", by_ref[raw["model"]])
    return PolicySpec("cascade", by_ref[raw["cheap"]], by_ref[raw["fallback"]], float(raw["threshold"]))


def _labels(experiments) -> tuple[dict[int, str], dict[int, str]]:
    names, refs = {}, {}
    for e in experiments:
        names[e.id] = e.name
        for policy in (e.champion, e.challenger):
            for spec in (policy.primary, policy.fallback):
                if spec is not None:
                    refs[spec.id] = spec.ref
    return names, refs


class Catalog:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._ttl = settings.ruleset_ttl_s
        self._loaded_at = -1e9
        self._by_name: dict[str, CompiledExperiment] = {}
        self._version = ""
        self._labels: tuple[dict[int, str], dict[int, str]] = ({}, {})
        self._lock = threading.Lock()

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._ttl:
            return
        with self._lock:
            if time.monotonic() - self._loaded_at < self._ttl:
                return
            try:
                self._by_name = self._load()
            except ServiceUnavailable:
                if self._version == "":
                    raise
                # Stale while error: keep routing with the last definitions until the database is back.
                self._loaded_at = time.monotonic()
                return
            self._labels = _labels(self._by_name.values())
            self._version = hashlib.sha256(json.dumps(
                [e.to_wire() for e in self._by_name.values()], sort_keys=True).encode()).hexdigest()[:32]
            self._loaded_at = time.monotonic()

    def labels(self) -> tuple[dict[int, str], dict[int, str]]:
        """(experiment id -> name, model id -> ref) of the loaded experiments, for metric labels."""
        return self._labels

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    def _load(self) -> dict[str, CompiledExperiment]:
        with self._db.unit_of_work() as session:
            records = experiment_store.all_records(session)
            refs = set()
            for r in records:
                for arm in ("champion", "challenger"):
                    p = r.definition[arm]
                    refs.update([p["model"]] if p["kind"] == "model" else [p["cheap"], p["fallback"]])
            models = {}
            for ref in refs:
                name, version = parse_ref(ref)
                record = model_store.by_ref(session, name, version)
                if record is not None:
                    models[ref] = _spec(record, self._settings)
                    self._fetch_file(session, record)
        compiled = {}
        for r in records:
            d = ExperimentDefinition.model_validate(r.definition)
            compiled[r.name] = CompiledExperiment(
                id=r.id, name=r.name, state=r.state, mode=r.mode, unit=d.unit, phase=r.current_phase, salt=r.phase.salt,
                weights_bp=tuple(r.phase.weights_bp), coverage_bp=r.coverage_bp, served_arm=r.served_arm,
                champion=_policy(r.definition["champion"], models), challenger=_policy(r.definition["challenger"], models),
                shadow_sample=d.shadow_sample, deadline_ms=d.challenger_deadline_ms or self._settings.challenger_deadline_ms,
                cache_champion=d.cache.champion, cache_challenger=d.cache.challenger, revision=r.revision,
            )
        return compiled

    def _fetch_file(self, session, record: ModelRecord) -> None:
        """Bring the model's file into this node's cache (a replica that did not receive the upload)."""
        try:
            artifacts.local_path(session, self._settings, record.digest)
        except ServiceUnavailable as exc:  # one missing file must not stop every other experiment
            log.error("model %s: %s", record.ref, exc.detail)

    def get(self, name: str) -> CompiledExperiment | None:
        self._fresh()
        return self._by_name.get(name)

    def by_id(self, experiment_id: int) -> CompiledExperiment | None:
        self._fresh()
        return next((e for e in self._by_name.values() if e.id == experiment_id), None)

    def ruleset(self) -> tuple[str, list[dict[str, Any]]]:
        self._fresh()
        return self._version, [e.to_wire() for e in self._by_name.values()]

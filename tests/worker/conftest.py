"""Fixtures for roll-up, analysis and worker tests: a database of their own (roll-up watermarks are
global state), models recorded without ONNX files, and experiments built on them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest


SIGNATURE = {"inputs": [{"name": "input", "shape": [None, 3], "dtype": "float32"}], "feature_names": ["a", "b", "c"],
             "outputs": [], "n_features": 3}


@pytest.fixture(params=["postgres", "sqlite"])
def own_db(request):
    """A Database of this test's own on each backend."""
    from service.store.database import Database

    url = request.getfixturevalue("fresh_pg" if request.param == "postgres" else "sqlite_url")
    db = Database(url)
    yield db
    db.dispose()


def record_models(db, names=("champion", "challenger"), costs=(1.0, 0.2)) -> list:
    """Model rows (no files: roll-ups and analyses never read them)."""
    from service.store import models as model_store

    out = []
    with db.unit_of_work() as session:
        for i, (name, cost) in enumerate(zip(names, costs)):
            out.append(model_store.insert(
                session, name=name, version="1", task="binary", digest=f"{i:064d}", file_size=1,
                signature=SIGNATURE, declared_cost_per_1k=cost, profile=None, derived_from_id=None, transform=None,
                description="", created_at=datetime.now(timezone.utc)))
    return out


def start_experiment(db, champion, challenger, *, name="exp", mode="ab", **definition):
    from service import experiments
    from service.definition import ExperimentDefinition

    body = {"name": name, "mode": mode, "champion": {"kind": "model", "model": champion.ref},
            "challenger": {"kind": "model", "model": challenger.ref}, "metric": {"kind": "binary", "margin": 0.02}}
    body.update(definition)
    record = experiments.create(db, ExperimentDefinition.model_validate(body), actor="test")
    return experiments.transition(db, str(record.id), "start", actor="test")

"""Fixtures for tests that run a real gunicorn service against a database of their own."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.harness.servers import IN_CI, ThrowawayPostgres, Unavailable


@dataclass
class Seeded:
    experiment: str
    champion: str
    challenger: str
    admin: dict
    sdk: dict
    features: list


def seed(database_url: str, data_dir, demo_models, *, mode: str = "ab", name: str = "exp", **definition) -> Seeded:
    """Migrate, register the demo champion and challenger, create and start an experiment, make keys."""
    from service import experiments, registry
    from service.auth import create_key
    from service.definition import ExperimentDefinition
    from service.migrate import upgrade
    from service.runtime import Runtime
    from tests.conftest import make_settings

    rt = Runtime(make_settings(data_dir, database_url=database_url))
    upgrade(rt.db.engine)
    models = list(demo_models.values())
    champion = next(m for m in models if getattr(m, "role", "") == "champion")
    challenger = next(m for m in models if getattr(m, "role", "") == "challenger")
    refs = {}
    for m in (champion, challenger):
        refs[m.name] = registry.register(rt.db, rt.settings, m.path.read_bytes(), name=m.name, version=m.version, task=m.task).ref
    body = {"name": name, "mode": mode, "champion": {"kind": "model", "model": refs[champion.name]},
            "challenger": {"kind": "model", "model": refs[challenger.name]}, "metric": {"kind": "binary", "margin": 0.02}}
    body.update(definition)
    record = experiments.create(rt.db, ExperimentDefinition.model_validate(body), actor="test")
    experiments.transition(rt.db, str(record.id), "start", actor="test")
    admin = {"Authorization": "Bearer " + create_key(rt.db, name="a", scope="admin").secret}
    sdk = {"Authorization": "Bearer " + create_key(rt.db, name="s", scope="sdk").secret}
    n = len(champion.feature_names)
    rt.close()
    return Seeded(name, refs[champion.name], refs[challenger.name], admin, sdk, [0.5] * n)


@pytest.fixture
def throwaway_pg():
    try:
        server = ThrowawayPostgres()
        server.start()
    except (Unavailable, Exception) as exc:
        if IN_CI:
            pytest.fail(f"cannot start a throwaway Postgres: {exc}")
        pytest.skip(f"cannot start a throwaway Postgres: {exc}")
    yield server
    server.destroy()

import pytest

from service.errors import ConfigurationError
from service.settings import load_settings


def test_defaults_are_the_embedded_sqlite_database_and_broker(tmp_path):
    settings = load_settings({"FRUGAL_DATA_DIR": str(tmp_path)})
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'frugal.db'}"
    assert settings.resolved_broker_url.startswith("sqla+sqlite:///")
    assert settings.is_embedded


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FRUGAL_LOG_LEVEL", "LOUD"),
        ("FRUGAL_MAX_REQUEST_BYTES", "lots"),
        ("FRUGAL_MAX_REQUEST_BYTES", "10"),
        ("FRUGAL_DATABASE_URL", "mysql://x"),
        ("FRUGAL_REPORT_TIMEZONE", "Mars/Olympus"),
        ("FRUGAL_SHADOW_BATCH_SIZE", "0"),
        ("FRUGAL_SHADOW_MAX_AGE_S", "0"),
        ("FRUGAL_SHADOW_MAX_AGE_S", "soon"),
        ("FRUGAL_SCORER_POLL_S", "-1"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(variable, value, tmp_path):
    with pytest.raises(ConfigurationError) as info:
        load_settings({"FRUGAL_DATA_DIR": str(tmp_path), variable: value})
    assert variable in str(info.value)


def test_create_app_validates_settings_from_the_environment(monkeypatch, tmp_path):
    from service.app import create_app

    monkeypatch.setenv("FRUGAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRUGAL_LOG_LEVEL", "CHATTY")
    with pytest.raises(ConfigurationError, match="FRUGAL_LOG_LEVEL"):
        create_app()


def test_postgres_urls_are_normalised_to_postgresql(tmp_path):
    settings = load_settings({"FRUGAL_DATA_DIR": str(tmp_path), "FRUGAL_DATABASE_URL": "postgres://u@h/db"})
    assert settings.resolved_database_url == "postgresql://u@h/db"

"""Settings: read from the environment once, validated inside ``create_app``.

Every variable is ``FRUGAL_<NAME>``.  With nothing set, Frugal runs on the embedded default: a
SQLite database and a SQLite-backed Celery broker in ``FRUGAL_DATA_DIR``, so no server is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import ConfigurationError

ENV_PREFIX = "FRUGAL_"


class Settings(BaseSettings):
    """Typed, frozen configuration.  See docs/configuration.md for every variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    data_dir: Path = Field(default=Path(".frugal"), description="Where SQLite files, model files, spool and reports live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/frugal.db")
    broker_url: str | None = Field(default=None, description="Celery broker; default an embedded SQLite broker")
    result_backend: str | None = Field(default=None, description="Celery result backend; default follows the broker")
    task_queue: str = Field(default="frugal", pattern=r"^[A-Za-z0-9._-]{1,100}$",
                            description="Celery queue the web process sends to and workers consume")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = True
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)
    max_upload_bytes: int = Field(default=256 * 1_048_576, ge=1024, le=4 * 1_073_741_824)
    auth_cache_ttl_s: float = Field(default=5.0, ge=0, description="How long a key lookup is cached (revocation delay)")
    auth_stale_max_s: float = Field(default=900.0, ge=0, le=86_400,
                                    description="During a database outage, how long a key verified before it keeps working")
    secret_key: str | None = Field(default=None, min_length=16, description=(
        "Signs dashboard sessions; default a random key made once and kept in the database, shared by every replica"))
    model_store_url: str | None = Field(default=None, description=(
        "Where model files are shared between nodes: unset = in the database; file:///path = a directory every node mounts"))

    # Inference
    ort_intra_op_threads: int = Field(default=1, ge=0, le=256)
    ort_inter_op_threads: int = Field(default=1, ge=0, le=256)
    # Defaults: AWS Fargate on-demand, Linux/x86, us-east-1 ($0.04048 per vCPU-hour, $0.004445 per GB-hour):
    # a CPU and a memory price quoted separately, as the cost model charges them (docs/models.md#cost).
    price_per_core_hour: float = Field(default=0.04048, ge=0, description="USD per CPU core-hour, for measured compute cost")
    price_per_gb_hour: float = Field(default=0.004445, ge=0, description="USD per GB-hour of resident memory")
    prediction_cache_size: int = Field(default=10_000, ge=0)
    prediction_cache_ttl_s: float = Field(default=300.0, gt=0)

    # Routing
    challenger_deadline_ms: float = Field(default=250.0, gt=0)
    ruleset_ttl_s: float = Field(default=1.0, ge=0, description="How long a web worker caches experiment definitions")

    # Shadow scoring (scorer workers: frugal scorer)
    shadow_batch_size: int = Field(default=256, ge=1, le=10_000, description="Shadow jobs a scorer claims per transaction")
    shadow_max_age_s: float = Field(default=3600.0, gt=0, description="Shadow jobs older than this are dropped and counted, not scored")
    shadow_reference_share: float = Field(
        default=1.0, ge=0, le=1,
        description="Share of shadow requests on which a scorer also times the champion, for the cost comparison")
    scorer_poll_s: float = Field(default=0.2, gt=0, le=60, description="How long an idle scorer waits before looking for jobs again")

    metrics_interval_s: float = Field(default=5.0, gt=0, le=3600,
                                      description="How often each process publishes its counters for /v1/metrics")

    benchmark_max_s: float = Field(default=120.0, gt=0, le=120,
                                   description="The longest a POST /v1/models/{id}/benchmark may measure (its budget_s is capped here)")

    # Event log
    event_queue_size: int = Field(default=100_000, ge=10)
    event_batch_size: int = Field(default=500, ge=1)
    event_flush_interval_s: float = Field(default=0.25, gt=0)
    spool_fsync: Literal["always", "batch", "never"] = "batch"
    event_close_budget_s: float = Field(default=5.0, gt=0, le=60,
                                        description="On shutdown, how long the writer may try the database before it spools what is left")
    ingest_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000,
                                             description="statement_timeout of an ingest transaction (Postgres): a slow database is spooled past")
    ingest_lock_timeout_ms: int = Field(default=250, ge=10, le=60_000,
                                        description="lock_timeout of an ingest transaction (Postgres): ingest never queues behind analysis work")

    # Worker and reports
    rollup_interval_s: float = Field(default=30.0, gt=0)
    analysis_interval_s: float = Field(default=60.0, gt=0)
    task_redelivery_s: int = Field(default=900, ge=1, description="a task whose worker died is redelivered after this long (Redis)")
    retention_days: float = Field(default=90.0, ge=0, description=(
        "Raw predictions and outcomes older than this (and rolled up) are deleted daily; 0 keeps them forever"))
    retention_batch: int = Field(default=10_000, ge=100, le=1_000_000, description="Rows deleted per retention transaction")
    retention_hour: int = Field(default=3, ge=0, le=23, description="Hour of the daily retention run (FRUGAL_REPORT_TIMEZONE)")
    report_timezone: str = "UTC"
    report_weekday: int = Field(default=0, ge=0, le=6, description="0 = Monday")
    report_hour: int = Field(default=6, ge=0, le=23)
    report_webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, description="signs every webhook (Standard Webhooks HMAC-SHA256)")
    webhook_allow_private: bool = Field(default=False, description="allow webhooks to loopback, link-local and "
                                        "private addresses (a receiver on this host or a private network)")
    public_url: str = Field(default="http://127.0.0.1:8000", description="Base URL used in links sent out")

    @field_validator("database_url", "broker_url", "result_backend", "report_webhook_url", "webhook_secret",
                     "secret_key", "model_store_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        if value is not None and value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://"):]
        return value

    @field_validator("model_store_url")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("file:///") and len(value) > len("file:///")):
            raise ValueError("must be file:///absolute/path (unset keeps model files in the database)")
        return value

    @field_validator("report_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    # Derived values -------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'frugal.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir.resolve() / 'broker.db'}"

    @property
    def resolved_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return f"db+sqlite:///{self.data_dir.resolve() / 'results.db'}"

    @property
    def is_embedded(self) -> bool:
        return self.database_url is None

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"


def load_settings(env: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``env`` (default ``os.environ``) plus explicit overrides.

    Raises :class:`ConfigurationError` whose message names each bad ``FRUGAL_*`` variable.
    """
    source = os.environ if env is None else env
    values = {
        key[len(ENV_PREFIX):].lower(): value
        for key, value in source.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX):].lower() in Settings.model_fields
    }
    values.update(overrides)
    try:
        # model_validate skips pydantic-settings' own env lookup: ``values`` is the one source.
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ENV_PREFIX + str(err["loc"][0]).upper() if err["loc"] else ENV_PREFIX
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None

"""API keys: creation, authentication and scopes.

A key looks like ``frg_<8-char id>_<43 chars of randomness>``.  Only its SHA-256 is stored: the
secret has 256 bits of entropy, so a slow password hash would add latency to every request and no
security.  The id part (``prefix``) names the key in logs and in ``frugal keys list``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from service.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized, ValidationFailed, field_error
from service.store import keys as key_store
from service.store.database import Database
from service.store.keys import KeyRecord

SCOPES = ("admin", "sdk", "read")
# admin may call every route; the other scopes only their own.
IMPLIED = {"admin": {"admin", "sdk", "read"}, "sdk": {"sdk"}, "read": {"read"}}
PREFIX_PATTERN = re.compile(r"[0-9a-f]{8}")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    secret: str


def create_key(db: Database, *, name: str, scope: str) -> NewKey:
    """Create a key; the returned secret is shown once and never stored."""
    errors = []
    if scope not in SCOPES:
        errors.append(field_error("scope", f"must be one of {', '.join(SCOPES)}"))
    if not name or len(name) > 100:
        errors.append(field_error("name", "must be 1 to 100 characters"))
    if errors:
        raise ValidationFailed("invalid key request", errors=errors)
    prefix = secrets.token_hex(4)
    secret = f"frg_{prefix}_{secrets.token_urlsafe(32)}"
    with db.unit_of_work() as session:
        record = key_store.insert(session, name=name, prefix=prefix, key_hash=hash_key(secret), scope=scope, now=utcnow())
    return NewKey(record, secret)


def list_keys(db: Database) -> list[KeyRecord]:
    with db.unit_of_work() as session:
        return key_store.list_all(session)


def revoke_key(db: Database, ident: str, *, revoked_dir: Path | None = None) -> KeyRecord:
    """Revoke by prefix (or the whole key) or by numeric id.

    With ``revoked_dir`` (``<data dir>/revoked``, the CLI passes it) the revocation is also written
    there, so processes on this host refuse the key at once even if the database then goes down
    before their cache has seen the revocation.

    A prefix is 8 hex characters and may be all digits, so an 8-character ident is tried as a
    prefix first and only then, if it is a number, as an id.
    """
    prefix = ident.removeprefix("frg_").split("_")[0]
    with db.unit_of_work() as session:
        record = None
        if PREFIX_PATTERN.fullmatch(prefix):
            record = key_store.revoke(session, prefix=prefix, now=utcnow())
        if record is None and ident.isdigit():
            record = key_store.revoke(session, key_id=int(ident), now=utcnow())
    if record is None:
        raise NotFound(f"no API key {ident!r}")
    if revoked_dir is not None:
        revoked_dir.mkdir(parents=True, exist_ok=True)
        (revoked_dir / record.prefix).write_text(utcnow().isoformat())
    return record


def session_key(db: Database, key_id: int) -> KeyRecord | None:
    """The key a browser session was opened with, if it still exists and is not revoked."""
    with db.unit_of_work() as session:
        record = key_store.by_id(session, key_id)
    return record if record is not None and record.active else None


class Authenticator:
    """Checks bearer tokens, caching lookups briefly so the predict path does not query per call.

    A revoked key stops working within ``ttl_s`` seconds in every process.  While the database is
    down a key this process verified keeps working (predictions ride the outage) unless it was
    revoked on this host (``revoked_dir``), and for at most ``stale_max_s`` after it was last verified.
    """

    def __init__(self, db: Database, ttl_s: float = 5.0, *, revoked_dir: Path | None = None, stale_max_s: float = 900.0) -> None:
        self._db = db
        self._ttl = ttl_s
        self._revoked_dir = revoked_dir
        self._stale_max = stale_max_s
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, header: str | None) -> KeyRecord:
        if not header:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' (create one with 'frugal keys create')")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <key>'")
        digest = hash_key(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._ttl:
            record = cached[1]
        else:
            try:
                with self._db.unit_of_work() as session:
                    record = key_store.by_hash(session, digest)
            except ServiceUnavailable:
                if cached is None or cached[1] is None:
                    raise
                # The database is down: a key this process has already verified keeps working, so
                # predictions go on (their events are spooled) instead of failing with 503; unless it
                # was revoked on this host, or was last verified too long ago.
                record = cached[1]
                if self._revoked_dir is not None and record.active and (self._revoked_dir / record.prefix).exists():
                    raise Unauthorized(f"API key {record.prefix} was revoked") from None
                if now - cached[0] > self._stale_max:
                    raise
                return self._checked(record)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, record)
        return self._checked(record)

    @staticmethod
    def _checked(record: KeyRecord | None) -> KeyRecord:
        if record is None:
            raise Unauthorized("unknown API key")
        if not record.active:
            raise Unauthorized(f"API key {record.prefix} was revoked")
        return record

    @staticmethod
    def check_scope(record: KeyRecord, scope: str) -> None:
        if scope not in IMPLIED[record.scope]:
            raise Forbidden(f"this route needs a key with scope '{scope}'; key {record.prefix} has scope '{record.scope}'")


def deployment_secret(db: Database, name: str) -> str:
    """A random secret shared by every process on this database, made by the first that asks."""
    from service.store import secrets as secret_store

    with db.unit_of_work() as session:
        return secret_store.get_or_create(session, name, secrets.token_urlsafe(32))

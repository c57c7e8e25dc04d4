"""Server-issued request ids: unguessable, and bound to the API key they were issued to.

``frq1-<24 hex: per-process nonce + counter>-<32 hex: keyed BLAKE2b MAC>``.  The MAC covers the body
and the id of the key that asked for the prediction, under a key derived from ``FRUGAL_SECRET_KEY``
(or the deployment's secret in the database, which every replica shares).  So an id reveals
nothing about the next one (an attacker sees the counter, never the MAC key), and ``POST
/v1/outcomes`` can tell, without a database lookup (it works during an outage too), whether the
posting key is the one the id was issued to: another sdk key's outcome for it is rejected.

Ids a client chooses itself cannot be bound this way (see docs/api.md); the ``frq1-`` prefix is
reserved for ids this module issues.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import threading

PREFIX = "frq1-"


def _secret(rt) -> bytes:
    """FRUGAL_SECRET_KEY, else the deployment's own secret in the database (every replica reads the same
    one, so an id issued by one replica is verified by any other)."""
    if rt.settings.secret_key:
        return rt.settings.secret_key.encode()
    from service.auth import deployment_secret

    return deployment_secret(rt.db, "request_ids").encode()


class RequestIds:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.blake2b(secret, person=b"frugal-reqid", digest_size=32).digest()
        self._lock = threading.Lock()
        self._pid = -1

    def _body(self) -> str:
        with self._lock:
            if self._pid != os.getpid():  # a fork: a new nonce, so two processes never issue the same body
                self._pid, self._nonce, self._counter = os.getpid(), os.urandom(6).hex(), itertools.count()
            return f"{self._nonce}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"

    def _mac(self, body: str, key_id: int) -> str:
        return hashlib.blake2b(f"{key_id}:{body}".encode(), key=self._key, digest_size=16).hexdigest()

    def issue(self, key_id: int) -> str:
        body = self._body()
        return f"{PREFIX}{body}-{self._mac(body, key_id)}"

    def issued_to(self, request_id: str, key_id: int) -> bool | None:
        """None for an id this service did not issue (a client's own); else whether it was issued to ``key_id``."""
        if not request_id.startswith(PREFIX):
            return None
        body, _, mac = request_id[len(PREFIX):].partition("-")
        return len(body) == 24 and hmac.compare_digest(mac, self._mac(body, key_id))


def request_ids(rt) -> RequestIds:
    return rt.lazy("request_ids", lambda: RequestIds(_secret(rt)))

"""HTTP transport: one small interface, a urllib3 implementation.

Pass your own object with the same ``request`` method to ``Client(transport=...)`` to route through
a proxy, a service mesh or another HTTP library.  It must raise :class:`TransportError` when nothing
came back (``timed_out`` says whether the deadline ran out) and otherwise return a :class:`Response`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class TransportError(Exception):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Transport(Protocol):
    def request(self, method: str, url: str, *, headers: dict[str, str], body: bytes | None,
                timeout: float) -> Response: ...

    def reset(self) -> None:
        """Drop pooled connections (called in a child after ``fork``)."""


class Urllib3Transport:
    """Pooled keep-alive connections; no retries (the client decides); a total timeout per request."""

    def __init__(self, maxsize: int = 10) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._pool = None

    def _manager(self):
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    import urllib3

                    self._pool = urllib3.PoolManager(maxsize=self._maxsize, block=False, retries=False)
        return self._pool

    def request(self, method: str, url: str, *, headers: dict[str, str], body: bytes | None,
                timeout: float) -> Response:
        import urllib3
        from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError as Urllib3Timeout

        try:
            r = self._manager().request(method, url, body=body, headers=headers, redirect=False,
                                        timeout=urllib3.Timeout(total=max(timeout, 0.001)), preload_content=True)
        except HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: a refusal is not a timeout
            timed_out = isinstance(reason, Urllib3Timeout) and not isinstance(reason, NewConnectionError)
            if timed_out:
                raise TransportError(f"no answer within {timeout * 1000:.0f} ms", timed_out=True) from exc
            raise TransportError(f"cannot reach {url.split('/', 3)[2]}: {type(reason).__name__}") from exc
        return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.data)

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._pool = None  # the parent's sockets are not ours: never reuse them

"""Webhooks: tell an experiment's URL when its decision changes (retried by the task with backoff).

* **Signed** as the Standard Webhooks spec does (https://www.standardwebhooks.com): headers
  ``webhook-id`` (stable per message, so a receiver can drop a redelivery), ``webhook-timestamp``
  (Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``.
  The secret is ``FRUGAL_WEBHOOK_SECRET``; a ``whsec_`` prefixed secret is base64 (as the spec's
  libraries issue them), any other string is used as its UTF-8 bytes.
* **No requests into the private network**: a URL whose host resolves to a loopback, link-local,
  private, shared, multicast or reserved address is refused, and so is a redirect to one
  (redirects are followed by hand, each hop checked, at most ``MAX_REDIRECTS``), unless
  ``FRUGAL_WEBHOOK_ALLOW_PRIVATE`` is set (a receiver on this host, in tests or on a private network).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from service.store.analyses import AnalysisRecord

MAX_REDIRECTS = 3


class WebhookFailed(Exception):
    """Transient: the task retries with backoff; it never blocks analysis."""


class WebhookRefused(Exception):
    """Permanent: the URL (or a redirect) points where Frugal does not send requests."""


@dataclass(frozen=True)
class WebhookPolicy:
    secret: str | None = None
    allow_private: bool = False
    timeout_s: float = 5.0


def decision_message(experiment: dict[str, Any], analysis: AnalysisRecord, previous: str | None, public_url: str) -> dict[str, Any]:
    return {
        "event": "decision_changed", "experiment": {"id": experiment["id"], "name": experiment["name"]},
        "decision": analysis.decision, "previous_decision": previous, "analysis_id": analysis.id,
        "explanation": analysis.explanation, "at": analysis.created_at.isoformat(),
        "links": {"results": f"{public_url}/v1/experiments/{experiment['id']}/results",
                  "dashboard": f"{public_url}/dashboard/experiments/{experiment['id']}"},
    }


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does (and the tests do): recompute the signature and check the timestamp."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lower["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, lower.get("webhook-id", ""), timestamp, body).split(",", 1)[1]
    offered = [s.split(",", 1)[1] for s in lower.get("webhook-signature", "").split() if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, s) for s in offered)


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")))


def _addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (all are checked: one private answer is enough to refuse)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)]


def check_destination(url: str, policy: WebhookPolicy) -> None:
    """Refuse a URL whose host is, or resolves to, an address on this host or a private network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"webhook URL {url!r} is not an http(s) URL")
    if policy.allow_private:
        return
    try:
        addresses = _addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise WebhookFailed(f"cannot resolve {parts.hostname}: {exc}") from exc
    bad = sorted({a for a in addresses if _blocked(a)})
    if bad:
        raise WebhookRefused(f"webhook host {parts.hostname} resolves to {', '.join(bad)} (loopback, link-local or "
                             "private); set FRUGAL_WEBHOOK_ALLOW_PRIVATE=true to allow it")


def post(url: str, message: dict[str, Any], policy: WebhookPolicy | None = None, *, message_id: str | None = None) -> int:
    """POST ``message`` (signed when the policy has a secret); returns the receiver's status."""
    policy = policy or WebhookPolicy()
    body = json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
    message_id = message_id or "msg_" + hashlib.sha256(body).hexdigest()[:32]
    timestamp = int(time.time())
    headers = {"User-Agent": "frugal-webhook/1", "Content-Type": "application/json",
               "webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if policy.secret:
        headers["webhook-signature"] = sign(policy.secret, message_id, timestamp, body)
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        check_destination(target, policy)
        try:
            response = requests.post(target, data=body, timeout=policy.timeout_s, headers=headers, allow_redirects=False)
        except requests.RequestException as exc:
            raise WebhookFailed(f"{type(exc).__name__}: {exc}") from exc
        if response.is_redirect and response.headers.get("location"):
            target = urljoin(target, response.headers["location"])
            continue
        if response.status_code >= 500 or response.status_code == 429:
            raise WebhookFailed(f"HTTP {response.status_code}")
        return response.status_code
    raise WebhookRefused(f"more than {MAX_REDIRECTS} redirects from {url}")

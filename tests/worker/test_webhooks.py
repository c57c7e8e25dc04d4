"""Webhooks: Standard Webhooks signatures (the spec's published vector), and no requests to this
host or a private network (or redirects there) unless FRUGAL_WEBHOOK_ALLOW_PRIVATE allows them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from service.analytics import webhooks
from service.analytics.webhooks import WebhookPolicy, WebhookRefused

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_the_standard_webhooks_published_vector():
    # secret, id, timestamp, body and signature as published by the Standard Webhooks reference libraries
    got = webhooks.sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_checks_body_id_and_timestamp():
    now = int(time.time())
    body = b'{"decision":"PROMOTE"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": webhooks.sign(SECRET, "msg_1", now, body)}
    assert webhooks.verify(SECRET, headers, body)
    assert not webhooks.verify(SECRET, headers, b'{"decision":"REJECT"}')
    assert not webhooks.verify(SECRET, {**headers, "webhook-id": "msg_2"}, body)
    old = now - 3600
    stale = {"webhook-id": "msg_1", "webhook-timestamp": str(old), "webhook-signature": webhooks.sign(SECRET, "msg_1", old, body)}
    assert not webhooks.verify(SECRET, stale, body)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/hook",
                                 "http://192.168.0.10/hook", "http://172.16.5.5/hook", "http://169.254.169.254/latest",
                                 "http://[::1]/hook", "http://[fe80::1]/hook", "http://100.64.0.1/hook", "http://0.0.0.0/"])
def test_loopback_link_local_and_private_destinations_are_refused(url):
    with pytest.raises(WebhookRefused, match="FRUGAL_WEBHOOK_ALLOW_PRIVATE"):
        webhooks.check_destination(url, WebhookPolicy())
    webhooks.check_destination(url, WebhookPolicy(allow_private=True))


def test_a_public_address_passes_and_a_non_http_url_is_refused():
    webhooks.check_destination("http://8.8.8.8/hook", WebhookPolicy())
    with pytest.raises(WebhookRefused):
        webhooks.check_destination("file:///etc/passwd", WebhookPolicy(allow_private=True))


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []
    redirect_to: str | None = None

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.redirect_to:
            self.send_response(307)
            self.send_header("Location", _Hook.redirect_to)
            self.end_headers()
            return
        _Hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received, _Hook.redirect_to = [], None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def test_a_local_receiver_needs_the_setting_and_gets_a_signed_message(hook):
    with pytest.raises(WebhookRefused):
        webhooks.post(hook, {"decision": "PROMOTE"}, WebhookPolicy(secret=SECRET))
    assert _Hook.received == []
    status = webhooks.post(hook, {"decision": "PROMOTE"}, WebhookPolicy(secret=SECRET, allow_private=True),
                           message_id="msg_analysis_7")
    assert status == 204
    headers, body = _Hook.received[0]
    assert json.loads(body) == {"decision": "PROMOTE"}
    assert headers["webhook-id"] == "msg_analysis_7" and webhooks.verify(SECRET, headers, body)


def test_a_redirect_to_a_private_address_is_refused(hook, monkeypatch):
    """The receiver's own host is made to look public (the resolver answers a public address for it),
    so only the redirect's target, the cloud metadata address, is private."""
    real = webhooks._addresses
    monkeypatch.setattr(webhooks, "_addresses", lambda host, port: ["93.184.216.34"] if host == "127.0.0.1" else real(host, port))
    _Hook.redirect_to = "http://169.254.169.254/latest/meta-data"
    with pytest.raises(WebhookRefused, match="169.254.169.254"):
        webhooks.post(hook, {"decision": "PROMOTE"}, WebhookPolicy(secret=SECRET))

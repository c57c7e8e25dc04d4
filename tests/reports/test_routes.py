"""/reports, /dashboard and /login: who may read, what a browser and an API client get, and errors."""

from __future__ import annotations

import re

import pytest

from service.auth import create_key, revoke_key

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PAGES = ("/dashboard", "/reports", "/reports/{id}", "/reports/{id}.pdf", "/dashboard/experiments/{name}")


@pytest.fixture
def ctx(app_factory, seeded):
    """An in-process app on the seeded database (each test rolled back) with last week's report stored."""
    from service.reports import weekly

    app = app_factory(seeded["url"])
    rt = app.extensions["frugal"]
    record = weekly.render_experiment(rt.db, rt.settings, seeded["name"], seeded["week"], pdf=False)
    keys = {scope: create_key(rt.db, name=scope, scope=scope) for scope in ("admin", "sdk", "read")}
    return {"app": app, "client": app.test_client(), "rt": rt, "report_id": record.id, "keys": keys, **seeded}


def bearer(ctx, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx['keys'][scope].secret}"}


def urls(ctx):
    return [p.format(id=ctx["report_id"], name=ctx["name"]) for p in PAGES]


def csrf(client) -> str:
    """The CSRF token the login form carries (kept in this client's session cookie)."""
    form = client.get("/login", headers=BROWSER).get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', form).group(1)


def post_login(client, **data):
    return client.post("/login", data={"csrf": csrf(client), **data})


def login(ctx, scope: str = "read"):
    return post_login(ctx["client"], key=ctx["keys"][scope].secret, next="/reports")


def test_without_a_key_or_session_every_page_redirects_to_login(ctx):
    for url in urls(ctx):
        response = ctx["client"].get(url, headers=BROWSER)
        assert response.status_code == 302, url
        assert response.headers["Location"] == f"/login?next={url}"


def test_login_brings_the_browser_back_to_the_page_it_asked_for(ctx):
    client, wanted = ctx["client"], f"/reports?week={ctx['week'].label}&experiment={ctx['name']}"
    sent = client.get(wanted, headers=BROWSER)
    assert sent.headers["Location"] == f"/login?next=/reports%3Fweek%3D{ctx['week'].label}%26experiment%3D{ctx['name']}"
    form = client.get(sent.headers["Location"], headers=BROWSER).get_data(as_text=True)
    assert f'name="next" value="{wanted.replace("&", "&amp;")}"' in form
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    back = client.post("/login", data={"key": ctx["keys"]["read"].secret, "next": wanted, "csrf": token})
    assert back.headers["Location"] == wanted


def test_an_unknown_bearer_key_is_401_problem(ctx):
    for url in urls(ctx):
        response = ctx["client"].get(url, headers={"Authorization": "Bearer frg_nope_nope"})
        assert response.status_code == 401, url
        assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("scope, status", [("sdk", 403), ("read", 200), ("admin", 200)])
def test_pages_need_the_read_scope_which_admin_implies(ctx, scope, status):
    for url in urls(ctx):
        response = ctx["client"].get(url, headers=bearer(ctx, scope))
        assert response.status_code == status, (url, response.get_data(as_text=True)[:300])


def test_the_pdf_is_a_download(ctx):
    response = ctx["client"].get(f"/reports/{ctx['report_id']}.pdf", headers=bearer(ctx, "read"))
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert f"frugal-{ctx['name']}-{ctx['week'].label}.pdf" in response.headers["Content-Disposition"]


def test_an_unknown_report_is_404_problem_for_api_clients_and_a_page_for_browsers(ctx):
    client = ctx["client"]
    for url in ("/reports/999999", "/reports/999999.pdf"):
        api = client.get(url, headers=bearer(ctx, "read"))
        assert api.status_code == 404 and api.mimetype == "application/problem+json"
        assert api.get_json()["detail"] == "no report 999999"
    login(ctx)
    page = client.get("/reports/999999", headers=BROWSER)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "no report 999999" in page.get_data(as_text=True)


def test_an_unknown_experiment_on_the_dashboard_is_404(ctx):
    response = ctx["client"].get("/dashboard/experiments/no-such", headers=bearer(ctx, "read"))
    assert response.status_code == 404 and response.get_json()["detail"] == "no experiment 'no-such'"


@pytest.mark.parametrize("week, message", [("2026-47", "must look like 2026-W47 (an ISO week)"), ("2026-W54", "2026 has no ISO week 54"),
                                           ("2025-W53", "2025 has no ISO week 53")])
def test_a_bad_week_filter_is_a_422_problem_naming_the_field(ctx, week, message):
    response = ctx["client"].get(f"/reports?week={week}", headers=bearer(ctx, "read"))
    assert response.status_code == 422
    body = response.get_json()
    assert body["errors"] == [{"field": "query.week", "message": message}]


def test_the_report_list_filters_by_week_and_experiment(ctx):
    client, read = ctx["client"], bearer(ctx, "read")
    listed = client.get(f"/reports?week={ctx['week'].label}&experiment={ctx['name']}", headers=read).get_data(as_text=True)
    assert f'href="/reports/{ctx["report_id"]}"' in listed
    other = client.get(f"/reports?week={ctx['week'].shift(-5).label}", headers=read).get_data(as_text=True)
    assert f'href="/reports/{ctx["report_id"]}"' not in other


def test_login_with_a_read_key_opens_a_session(ctx):
    client = ctx["client"]
    response = login(ctx)
    assert response.status_code == 302 and response.headers["Location"] == "/reports"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ctx["keys"]["read"].secret not in cookie  # only the key's id, signed
    for url in urls(ctx):
        assert client.get(url, headers=BROWSER).status_code == 200, url
    dashboard = client.get("/dashboard", headers=BROWSER).get_data(as_text=True)
    assert f'data-decision="{ctx["name"]}">PROMOTE<' in dashboard


def test_login_refuses_a_wrong_key_and_a_key_without_read_scope(ctx):
    client = ctx["client"]
    wrong = post_login(client, key="frg_wrong_key")
    assert wrong.status_code == 401 and "unknown API key" in wrong.get_data(as_text=True)
    sdk = post_login(client, key=ctx["keys"]["sdk"].secret)
    assert sdk.status_code == 403 and "scope" in sdk.get_data(as_text=True)
    assert client.get("/dashboard", headers=BROWSER).status_code == 302


def test_a_revoked_key_ends_the_session_and_logout_ends_it_too(ctx):
    client = ctx["client"]
    login(ctx)
    assert client.get("/dashboard", headers=BROWSER).status_code == 200
    revoke_key(ctx["rt"].db, str(ctx["keys"]["read"].record.id))
    assert client.get("/dashboard", headers=BROWSER).status_code == 302
    login(ctx, "admin")
    assert client.get("/dashboard", headers=BROWSER).status_code == 200
    page = client.get("/dashboard", headers=BROWSER).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.get("/logout").status_code == 405, "logout is POST only"
    assert client.post("/logout").status_code == 403, "a POST without the token (another site's form) does nothing"
    assert client.get("/dashboard", headers=BROWSER).status_code == 200
    assert client.post("/logout", data={"csrf": token}).headers["Location"] == "/login"
    assert client.get("/dashboard", headers=BROWSER).status_code == 302


def test_login_needs_the_forms_csrf_token(ctx):
    """Login CSRF: another site's form cannot log this browser in with the attacker's key."""
    client = ctx["client"]
    forged = client.post("/login", data={"key": ctx["keys"]["read"].secret, "next": "/reports"})
    assert forged.status_code == 403 and "expired" in forged.get_data(as_text=True)
    assert client.get("/dashboard", headers=BROWSER).status_code == 302
    stolen = client.post("/login", data={"key": ctx["keys"]["read"].secret, "csrf": "a-guess"})
    assert stolen.status_code == 403
    assert login(ctx).status_code == 302
    assert client.get("/dashboard", headers=BROWSER).status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "dashboard"])
def test_login_never_redirects_off_site(ctx, target):
    response = post_login(ctx["client"], key=ctx["keys"]["read"].secret, next=target)
    assert response.headers["Location"] == "/dashboard"


def test_pages_forbid_scripts_and_framing(ctx):
    response = ctx["client"].get(f"/reports/{ctx['report_id']}", headers=bearer(ctx, "read"))
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy


def test_html_pages_are_not_in_the_openapi_document(ctx):
    paths = ctx["client"].get("/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith(("/reports", "/dashboard", "/login", "/logout"))]

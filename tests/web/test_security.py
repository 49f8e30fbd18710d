"""Who may read and write: the token (header, cookie, first-load query), the loopback host
check, cross-site writes, the security headers, and cancelling traces only with control on."""

from __future__ import annotations

import logging

import pytest
from core.helpers import echo, node, running, within

from penguiflow.core import create
from penguiflow.web import TOKEN_ENV, create_app, serve_flow
from penguiflow.web._security import COOKIE, fingerprint

from .support import Gate, Seen, asgi_client, gated_flow, msg

TOKEN = "s3cret-token"


def echo_app(**kwargs: object) -> object:
    return create_app(create(node(echo, "echo").to()), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/", "/app.js", "/api/graph", "/api/stats", "/api/traces"])
async def test_with_a_token_everything_but_the_probes_needs_it(path: str) -> None:
    app = echo_app(token=TOKEN)
    async with asgi_client(app) as client:
        anonymous = await client.get(path)
        wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
        bearer = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in anonymous.json()["error"]
    assert bearer.status_code == 200


async def test_probes_stay_open_unless_protected() -> None:
    async with asgi_client(echo_app(token=TOKEN)) as client:
        open_health = await client.get("/healthz")
        open_metrics = await client.get("/metrics")
    async with asgi_client(echo_app(token=TOKEN, protect_probes=True)) as client:
        closed_health = await client.get("/healthz")
        closed_metrics = await client.get("/metrics")
        allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (open_health.status_code, open_metrics.status_code) == (503, 200)  # not running
    assert (closed_health.status_code, closed_metrics.status_code) == (401, 401)
    assert allowed.status_code == 200


async def test_the_first_load_sets_a_cookie_and_drops_the_token_from_the_address() -> None:
    app = echo_app(token=TOKEN)
    async with asgi_client(app) as client:
        wrong = await client.get("/?token=nope")
        login = await client.get(f"/?token={TOKEN}")
        page = await client.get("/")  # the client keeps the cookie, as a browser does
        api = await client.get("/api/graph")
    async with asgi_client(app) as fresh:
        query_elsewhere = await fresh.get(f"/api/graph?token={TOKEN}")
    assert wrong.status_code == 401
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert page.status_code == 200 and api.status_code == 200
    assert query_elsewhere.status_code == 401  # a query token counts on the page only


async def test_over_https_the_cookie_is_secure() -> None:
    async with asgi_client(echo_app(token=TOKEN), base_url="https://127.0.0.1") as client:
        login = await client.get(f"/?token={TOKEN}")
    assert login.status_code == 303 and "; Secure" in login.headers["set-cookie"]


async def test_a_forged_cookie_is_refused_and_odd_neighbours_are_ignored() -> None:
    app = echo_app(token=TOKEN)
    async with asgi_client(app) as client:
        login = await client.get(f"/?token={TOKEN}")
    proof = login.headers["set-cookie"].split(";")[0]
    async with asgi_client(app) as client:
        forged = await client.get("/api/graph", headers={"Cookie": f"{COOKIE}={TOKEN}"})
        beside = await client.get("/api/graph", headers={"Cookie": f'a(b=c; x="\\; {proof}'})
    assert (forged.status_code, beside.status_code) == (401, 200)


async def test_the_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    async with asgi_client(echo_app()) as client:
        anonymous = await client.get("/api/graph")
        bearer = await client.get("/api/graph", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (anonymous.status_code, bearer.status_code) == (401, 200)


@pytest.mark.parametrize("token", ["", "two words", "tab\there"])
def test_a_bad_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="must be a non-empty string of printable characters"):
        echo_app(token=token)


async def test_without_a_token_only_loopback_host_names_are_answered() -> None:
    async with asgi_client(echo_app()) as client:
        rebound = await client.get("/api/graph", headers={"Host": "evil.example:8787"})
        names = [
            (await client.get("/api/graph", headers={"Host": host})).status_code
            for host in ("127.0.0.1:8787", "localhost:8787", "[::1]:8787", "localhost")
        ]
        probe = await client.get("/metrics", headers={"Host": "evil.example"})
    assert rebound.status_code == 400
    assert rebound.json()["error"] == "this page answers to a loopback host name only"
    assert names == [200, 200, 200, 200]
    assert probe.status_code == 200


async def test_every_answer_carries_the_security_headers() -> None:
    async with asgi_client(echo_app(token=TOKEN)) as client:
        answers = [
            await client.get("/"),  # 401
            await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}),
            await client.get("/api/graph", headers={"Authorization": f"Bearer {TOKEN}"}),
            await client.get("/metrics"),
        ]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"


async def test_serve_flow_refuses_a_public_address_without_a_token() -> None:
    flow = create(node(echo, "echo").to())
    with pytest.raises(ValueError, match="not loopback\\) needs a token"):
        await serve_flow(flow, host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match="'every interface'"):
        await serve_flow(flow, host="", port=0)


async def test_serve_flow_listens_on_a_public_address_with_a_token() -> None:
    flow = create(node(echo, "echo").to())
    async with await serve_flow(flow, host="0.0.0.0", port=0, token=TOKEN) as server:
        assert server.host == "0.0.0.0" and server.port > 0


# -- control ------------------------------------------------------------------------------------


async def test_cancel_is_refused_with_control_off(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()
    flow = gated_flow(gate)
    app = create_app(flow)
    async with running(flow), asgi_client(app) as client:
        await flow.emit(msg("hold", "keep"))
        await within(gate.entered.wait())
        with caplog.at_level(logging.INFO, "penguiflow.web"):
            refused = await client.post("/api/cancel", json={"trace_id": "keep"})
        as_get = await client.get("/api/cancel")
        still = flow.active_traces()
        gate.open.set()
        result = await within(flow.fetch(trace_id="keep"))
    assert refused.status_code == 403 and "control is off" in refused.json()["error"]
    assert as_get.status_code == 405
    assert still == ["keep"] and result.payload == "hold"
    (record,) = [r for r in caplog.records if r.message.startswith("web_trace_cancel_refused")]
    assert "127.0.0.1:50123" in record.message


async def test_cancel_with_control_on_cancels_and_logs_who(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    flow = gated_flow(gate)
    app = create_app(flow, control=True, token=TOKEN)
    seen = Seen()
    flow.add_middleware(seen)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with running(flow), asgi_client(app, headers=auth) as client:
        await flow.emit(msg("hold", "doomed"))
        await within(gate.entered.wait())
        with caplog.at_level(logging.INFO, "penguiflow.web"):
            answer = await client.post("/api/cancel", json={"trace_id": "doomed"})
        await seen.wait_for("trace_cancel_finish", "doomed")
        again = await client.post("/api/cancel", json={"trace_id": "doomed"})
        timeline = (await client.get("/api/traces/doomed")).json()
        assert flow.active_traces() == []
    assert answer.status_code == 200
    assert answer.json() == {"trace_id": "doomed", "cancelled": True}
    assert again.json() == {"trace_id": "doomed", "cancelled": False}
    assert timeline["status"] == "cancelled" and timeline["control"] is True
    record = next(r for r in caplog.records if r.message.startswith("web_trace_cancel trace"))
    assert record.levelno == logging.WARNING
    assert "trace=doomed cancelled=True client=127.0.0.1:50123" in record.message
    assert f"token={fingerprint(TOKEN)} via=bearer" in record.message
    assert TOKEN not in record.message
    assert (record.client, record.token, record.via) == (  # type: ignore[attr-defined]
        "127.0.0.1:50123",
        fingerprint(TOKEN),
        "bearer",
    )


async def test_cancel_checks_its_request() -> None:
    flow = create(node(echo, "echo").to())
    app = create_app(flow, control=True)
    async with asgi_client(app) as client:
        stopped = await client.post("/api/cancel", json={"trace_id": "x"})
        async with running(flow):
            form = await client.post("/api/cancel", data={"trace_id": "x"})
            no_id = await client.post("/api/cancel", json={"id": "x"})
            not_json = await client.post(
                "/api/cancel", content=b"{", headers={"Content-Type": "application/json"}
            )
            cross_site = await client.post(
                "/api/cancel", json={"trace_id": "x"}, headers={"Origin": "http://evil.example"}
            )
            fetch_site = await client.post(
                "/api/cancel", json={"trace_id": "x"}, headers={"Sec-Fetch-Site": "cross-site"}
            )
            same_site = await client.post(
                "/api/cancel", json={"trace_id": "x"}, headers={"Origin": "http://127.0.0.1:8787"}
            )
    assert stopped.status_code == 409
    assert form.status_code == 415
    assert (no_id.status_code, not_json.status_code) == (400, 400)
    assert (cross_site.status_code, fetch_site.status_code) == (403, 403)
    assert cross_site.json()["error"] == "cross-site request refused"
    assert same_site.json() == {"trace_id": "x", "cancelled": False}

"""User data on the page: redacted by the user's function, then cut to ``max_payload_chars``,
in every answer that shows it (timelines, node figures, ``/healthz``)."""

from __future__ import annotations

import json
import logging
import re

import pytest

from penguiflow._sanitize import REDACTION_FAILED, Sanitizer
from penguiflow.web import create_app

from .support import Gate, Seen, asgi_client, gated_flow, msg

SECRET = re.compile(r"sk-[a-z0-9]+")


def hide_keys(text: str) -> str:
    return SECRET.sub("[key]", text)


async def test_errors_are_redacted_and_cut_everywhere_they_show() -> None:
    flow = gated_flow(Gate())
    app = create_app(flow, redact=hide_keys, max_payload_chars=120)
    seen = Seen()
    flow.add_middleware(seen)
    long_tail = "z" * 500
    flow.run()
    try:
        async with asgi_client(app) as client:
            await flow.emit(msg(f"fail sk-abc123 {long_tail}", "leaky"))
            await seen.wait_for("node_failed", "leaky")
            timeline = await client.get("/api/traces/leaky")
            stats = await client.get("/api/stats")
            health = await client.get("/healthz")
    finally:
        await flow.stop()
    for answer in (timeline, stats, health):
        assert "sk-abc123" not in answer.text
        assert long_tail not in answer.text
    details = [e["detail"] for e in timeline.json()["events"] if e["detail"]]
    assert details and all(len(d) <= 120 for d in details)
    assert all(d.endswith(" chars]") for d in details)
    error = stats.json()["nodes"]["answer"]["last_error"]
    assert error["code"] == "NODE_EXCEPTION"
    assert error["message"].startswith(
        "Node 'answer' raised ValueError: cannot handle fail [key] z"
    )
    assert "[key]" in error["message"] and len(error["message"]) <= 120
    health_error = health.json()["nodes"][1]["last_error"]
    assert health_error["message"] == error["message"]


async def test_a_failing_redact_hides_the_value(caplog: pytest.LogCaptureFixture) -> None:
    def broken(text: str) -> str:
        raise RuntimeError(text)

    flow = gated_flow(Gate())
    app = create_app(flow, redact=broken)
    seen = Seen()
    flow.add_middleware(seen)
    flow.run()
    try:
        async with asgi_client(app) as client:
            await flow.emit(msg("fail sk-zzz", "t"))
            await seen.wait_for("node_failed", "t")
            with caplog.at_level(logging.ERROR, "penguiflow.web"):
                timeline = (await client.get("/api/traces/t")).json()
    finally:
        await flow.stop()
    details = {e["detail"] for e in timeline["events"] if e["detail"]}
    assert details == {REDACTION_FAILED}
    assert "sk-zzz" not in json.dumps(timeline)
    assert caplog.records and all("sk-zzz" not in r.getMessage() for r in caplog.records)


def test_text_renders_structures_as_json_and_odd_values_by_repr() -> None:
    sanitizer = Sanitizer(None, 100)
    assert sanitizer.text("plain") == "plain"
    assert sanitizer.text({"a": [1, None]}) == '{"a": [1, null]}'
    assert sanitizer.text({"when": object}) == '{"when": "<class \'object\'>"}'
    looped: list[object] = []
    looped.append(looped)
    assert sanitizer.text(looped) == "[[...]]"
    assert sanitizer.text({(1, 2): "tuple key"}) == "{(1, 2): 'tuple key'}"
    assert sanitizer.optional(None) is None


def test_cutting_keeps_within_the_bound_and_says_how_long_it_was() -> None:
    sanitizer = Sanitizer(None, 32)
    cut = sanitizer.text("x" * 1000)
    assert len(cut) == 32 and cut.endswith("\u2026 [1000 chars]")
    assert sanitizer.text("y" * 32) == "y" * 32


def test_redact_must_return_text(caplog: pytest.LogCaptureFixture) -> None:
    sanitizer = Sanitizer(lambda text: None, 100)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.ERROR, "penguiflow.web"):
        assert sanitizer.text("secret") == REDACTION_FAILED
    assert [r.message for r in caplog.records] == ["web_redact_failed"]


@pytest.mark.parametrize("bad", [31, 0, True, 40.0])
def test_max_chars_is_checked(bad: object) -> None:
    with pytest.raises(ValueError, match=f"max_payload_chars must be an int >= 32, got {bad!r}"):
        Sanitizer(None, bad)  # type: ignore[arg-type]


def test_redact_must_be_callable() -> None:
    with pytest.raises(TypeError, match="redact must be a callable str -> str, got str"):
        Sanitizer("nope", 100)  # type: ignore[arg-type]

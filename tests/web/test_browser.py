"""The page in a real browser (Debian's chromium, driven by Playwright), against a real uvicorn
server on a free port, a running flow and a real SQLite store.

It checks that the node figures follow the flow, that a trace's timeline opens on a click,
that control cancels a trace from the page, and that payloads built to run script show as
text and run nothing. It leaves a screenshot in ``artifacts/web-page.png``.

Without ``/usr/bin/chromium`` the test is skipped, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from core.helpers import TIMEOUT, running, within
from playwright.async_api import Locator, Page, async_playwright, expect

from penguiflow.stores import SQLiteStore
from penguiflow.web import serve_flow

from .support import XSS_IMG, XSS_SCRIPT, Gate, Seen, gated_flow, msg

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "artifacts" / "web-page.png"
WAIT_MS = TIMEOUT * 1000


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1360, "height": 900})
            yield await context.new_page()
        finally:
            await browser.close()


def figure(page: Page, node: str, field: str) -> Locator:
    return page.locator(f'[data-node="{node}"] [data-field="{field}"]')


async def test_the_page_follows_the_flow_and_shows_payloads_as_text(
    page: Page, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    gate = Gate()
    async with SQLiteStore(tmp_path / "flow.db") as store:
        flow = gated_flow(gate, state_store=store)
        async with (
            running(flow),
            await serve_flow(flow, port=0, store=store, control=True, interval_s=0.25) as server,
        ):
            seen = Seen()
            flow.add_middleware(seen)
            await page.goto(server.url)
            await expect(page.locator("#health")).to_have_text("ok", timeout=WAIT_MS)
            await expect(figure(page, "prepare", "outcomes")).to_contain_text(
                "ok 0", timeout=WAIT_MS
            )

            # The figures follow the flow: three traces through, then one held in the node.
            for index in range(3):
                await flow.emit(msg(f"job {index}", f"job-{index}"))
                await within(flow.fetch(trace_id=f"job-{index}"))
            await expect(figure(page, "prepare", "outcomes")).to_contain_text(
                "ok 3", timeout=WAIT_MS
            )
            await expect(figure(page, "answer", "outcomes")).to_contain_text(
                "ok 3", timeout=WAIT_MS
            )
            await flow.emit(msg("hold this one", "held"))
            await within(gate.entered.wait())
            busy = figure(page, "prepare", "queue")
            await expect(busy).to_contain_text("busy 1/1", timeout=WAIT_MS)

            # Control: cancel the held trace from its timeline.
            await store.flush()
            row = page.locator('#traces tr[data-trace="held"]')
            await row.click(timeout=WAIT_MS)
            await expect(page.locator("#timeline-status")).to_have_text("running")
            await page.locator("#cancel").click()
            await expect(page.locator("#cancel-result")).to_have_text("cancelled")
            await seen.wait_for("trace_cancel_finish", "held")
            await expect(busy).to_contain_text("busy 0/1", timeout=WAIT_MS)

            # A payload made to run script, in the input and in the error it causes.
            await flow.emit(msg(f"fail {XSS_SCRIPT} {XSS_IMG}", "xss"))
            await seen.wait_for("node_failed", "xss")
            await store.flush()
            await page.locator('#traces tr[data-trace="xss"]').click(timeout=WAIT_MS)
            failed_row = page.locator('#timeline tr[data-kind="node_failed"]')
            await expect(failed_row).to_have_count(1, timeout=WAIT_MS)
            shown_input = await page.locator("#trace-input").text_content()
            shown_error = await failed_row.locator("td.detail").text_content()
            pwned = await page.evaluate("typeof window.__pwned")
            injected = await page.evaluate(
                "document.querySelectorAll('main img, main script').length"
            )
            scripts = await page.evaluate("Array.from(document.scripts, s => s.src)")
            await expect(page.locator("#timeline-status")).to_have_text("failed")
            await expect(page.locator('#traces tr[data-trace="held"] .chip')).to_have_text(
                "cancelled", timeout=WAIT_MS
            )

            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            print(f"screenshot: {SCREENSHOT}")
    assert shown_input is not None and XSS_SCRIPT in shown_input
    assert '<img src=x onerror=\\"window.__pwned=2\\">' in shown_input  # JSON text, quoted
    assert shown_error is not None and XSS_SCRIPT in shown_error
    assert "<img src=x onerror=" in shown_error
    assert pwned == "undefined"
    assert injected == 0
    assert scripts == [server.url + "app.js"]
    assert errors == []
    assert SCREENSHOT.stat().st_size > 10_000

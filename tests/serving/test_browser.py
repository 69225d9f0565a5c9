"""A real browser (Debian chromium, driven by Playwright) chats with the tiny model on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import QA

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_page_shows_model_and_streams_a_korean_answer(browser, server, registered, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 700}, locale="ko-KR")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.url + "/")
    page.wait_for_selector("#ready-dot.ready", timeout=15_000)
    assert page.inner_text("#model-name") == "dagllm-ko"
    assert page.inner_text("#model-version") == registered.version
    assert page.inner_text("#model-alias") == "champion"
    assert page.input_value("#temperature") == "0"  # the server's default, shown in the page

    question, answer = QA[0]
    page.fill("#input", question)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant .meta", timeout=30_000)  # the done line: 토큰 N개 · …
    assert page.inner_text(".msg.user .text") == question
    assert page.inner_text(".msg.assistant .text") == answer
    assert "토큰" in page.inner_text(".msg.assistant .meta")

    # a second turn carries the conversation; it is kept in the page after a reload
    page.fill("#input", QA[1][0])
    with page.expect_request("**/api/chat") as sent:
        page.click("#send")
    page.locator(".msg.assistant .meta").nth(1).wait_for(timeout=30_000)
    assert sent.value.post_data_json["history"] == [{"role": "user", "content": question},
                                                    {"role": "assistant", "content": answer}]
    assert page.locator(".msg.assistant .text").nth(1).inner_text() == QA[1][1]
    shot = Path(os.environ.get("DAGLLM_SCREENSHOT_DIR", tmp_path)) / "chat.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.reload()
    page.wait_for_selector(".msg.assistant")
    assert page.locator(".msg").count() == 4
    assert all(u.startswith(server.url) or u.startswith("data:") for u in requests), requests
    page.close()


def test_page_shows_server_errors(browser, tight_server):
    page = browser.new_page()
    page.goto(tight_server.url + "/")
    page.wait_for_selector("#ready-dot.ready", timeout=15_000)
    page.evaluate("document.getElementById('input').removeAttribute('maxlength')")
    page.fill("#input", "가" * 201)  # over the server's max_message_chars
    page.click("#send")
    page.wait_for_selector(".msg.error .meta", timeout=15_000)
    assert "at most 200" in page.inner_text(".msg.error .meta")
    page.close()

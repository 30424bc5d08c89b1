"""The review page in a real headless browser (Debian's chromium driven by playwright): search, see the
neighbours, mark a pair, find the mark in the review log, and an unknown id told with the close ids."""

import json
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine: `make install-browser` (apt-get install chromium)")
def test_review_page_search_neighbours_and_mark(sample, sample_index, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (make install)")
    import uvicorn

    from anchor_embed.serving.server import create_app

    log = tmp_path / "reviews.jsonl"
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(sample_index / "idx", review_log=log, poll=0), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    nickname = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])["nickname"]
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#reviewer", "tester")
            page.dispatch_event("#reviewer", "change")
            page.fill("#q", nickname.upper())                      # case-insensitive search by nickname
            page.wait_for_selector("#suggest li")
            page.click("#suggest li")
            page.wait_for_selector(".card")
            cards = page.query_selector_all(".card")
            assert len(cards) == 12 and "s0000" in page.inner_text("#me")
            first = cards[0].get_attribute("data-id")
            assert "text" in cards[0].inner_text() and "tags" in cards[0].inner_text()
            cards[0].query_selector("button.same").click()
            page.wait_for_selector(".card .done:has-text('marked: same owner')")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            page.evaluate("show('S0000')")                          # an unknown id: one line and the close ids
            page.wait_for_selector("#msg:has-text('is not in the index')")
            unknown = page.inner_text("#msg")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    line = json.loads(log.read_text().splitlines()[-1])
    assert (line["a"], line["b"], line["verdict"], line["reviewer"]) == ("s0000", first, "same_owner", "tester")
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert unknown.startswith("anchor_id 'S0000' is not in the index; close: s0000"), unknown

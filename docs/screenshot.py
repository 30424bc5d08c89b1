"""Regenerate docs/review_page.png: the serve page on a real index, searched and one pair marked.

    python docs/screenshot.py INDEX QUERY [--media-root DIR] [--out docs/review_page.png]

Needs chromium on PATH (`make install-browser`) and the dev extra (playwright).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", type=Path)
    ap.add_argument("query", help="A nickname (or part of one) typed into the search box.")
    ap.add_argument("--media-root", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("review_page.png"))
    args = ap.parse_args()
    import uvicorn
    from playwright.sync_api import sync_playwright

    from anchor_embed.serving.server import create_app

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH: make install-browser")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(tempfile.mkdtemp()) / "reviews.jsonl"            # the demo's marks never touch the index folder
    app = create_app(args.index, review_log=log, poll=0, media_root=args.media_root)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill("#reviewer", "ops-1")
        page.dispatch_event("#reviewer", "change")
        page.fill("#q", args.query)
        page.wait_for_selector("#suggest li")
        page.click("#suggest li")
        page.wait_for_selector(".card img", timeout=15_000)
        page.query_selector_all(".card")[1].query_selector("button.notrel").click()
        page.wait_for_selector(".card .done:has-text('marked')")
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out), full_page=False)
        browser.close()
    server.should_exit = True
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Regenerates docs/app.png: the app on the bundled weights, served for real and photographed in
headless Chromium, with the Edit tab open on the example portrait and one expression asked for.

    python docs/screenshot.py [--out docs/app.png] [--expression "Roll=8"]

Needs playwright (`pip install playwright`) and a Chromium (`apt-get install chromium`, or
SFD_CHROMIUM=/path/to/chromium).
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "app.png")
    parser.add_argument("--expression", default="Roll=8",
                        help="LABEL=VALUE: the Expression slider to set (its label starts with LABEL)")
    parser.add_argument("--portrait", type=Path, default=ROOT / "examples" / "astronaut.jpg")
    args = parser.parse_args(argv)
    label, value = args.expression.rsplit("=", 1)

    from playwright.sync_api import expect, sync_playwright

    from sfd.app import AppSettings, build_demo, bundled_default, launch_options

    settings = AppSettings()
    demo = build_demo(bundled_default("cpu"), settings)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_options(settings))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("SFD_CHROMIUM", "/usr/bin/chromium"),
                                        args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Edit").click()
            page.locator("#sfd-edit-portrait input[type=file]").set_input_files(str(args.portrait))
            expect(page.locator("#sfd-edit-info")).to_contain_text("Face: found by", timeout=120_000)
            edited = page.locator("#sfd-edited img")
            before = edited.get_attribute("src")
            slider = page.locator(".sfd-expression-slider").filter(has_text=label.strip()).first
            number = slider.locator("input[type=number]")
            number.fill(value.strip())
            number.press("Enter")
            page.wait_for_function("src => { const img = document.querySelector('#sfd-edited img');"
                                   " return img && img.src !== src; }", arg=before, timeout=120_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Screenshots of the signing officer's flow for the README (Chromium, 1366×768, Vietnamese).

    .venv/bin/python scripts/officer_screenshots.py          # -> docs/screenshots/officer-*.png
    .venv/bin/python scripts/officer_screenshots.py --out DIR

It runs the demo for real (scripts/demo.py: test PKI, registry, platform, SoftHSM token and the
headless agent) with its data in a temporary folder, the agent on a pseudo-terminal, and walks
the officer's flow in Debian's Chromium (never a downloaded browser): login, search, preview,
"Ký số" (the page waits while the agent asks), the agent's three questions answered on its
terminal as the officer would (c, c, then the PIN), the result page and the batch list. The
agent's terminal at the consent question is saved as officer-4-agent.txt; the desktop app's
consent dialog is scripts/screenshots.py's consent-pin.png. The demo's ports (8080, 8090, 8091,
47321) must be free.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
URL = "http://127.0.0.1:8080"
OFFICER, PASSWORD, PIN = "kyduyet.bennghe", "kyso-demo-2022", "123456"
SIZE = {"width": 1366, "height": 768}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """The demo on a pseudo-terminal: what it printed, and keys typed into it."""

    def __init__(self, demo_dir: Path) -> None:
        env = dict(os.environ, KYSO_DEMO_DIR=str(demo_dir), KYSO_DEMO_PEOPLE="400")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the demo, with this pseudo-terminal as its terminal
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "scripts/demo.py"], env)  # noqa: S606
        self.text = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.text += ANSI.sub("", data.decode("utf-8", "replace"))

    def wait_for(self, needle: str, after: int = 0, timeout: float = 600) -> int:
        """Waits until ``needle`` is printed after position ``after``; returns where it ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = self.text.find(needle, after)
            if found >= 0:
                return found + len(needle)
            time.sleep(0.2)
        raise TimeoutError(f"the demo did not print {needle!r}:\n{self.text[-3000:]}")

    def type(self, keys: str) -> None:
        os.write(self.fd, (keys + "\r").encode())

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGINT)  # Ctrl+C: the demo stops its services
        for _ in range(60):
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.5)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def walk(out: Path, terminal: Terminal) -> None:
    ready = terminal.wait_for("Nhấn Ctrl+C để dừng")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(locale="vi-VN", viewport=SIZE)
        expect.set_options(timeout=60_000)

        page.goto(f"{URL}/login")
        page.get_by_label("Tên đăng nhập").fill(OFFICER)
        page.get_by_label("Mật khẩu").fill(PASSWORD)
        page.screenshot(path=out / "officer-1-login.png")
        page.get_by_role("button", name="Đăng nhập").click()
        expect(page.get_by_role("heading", name="Ký duyệt chứng nhận tiêm")).to_be_visible()

        page.locator("input[name=from]").fill("01/01/2021")
        page.get_by_role("button", name="Tìm kiếm", exact=True).click()
        boxes = page.locator("input.dose-box:not([disabled])")
        expect(boxes.first).to_be_visible()
        message = page.locator("#selection-message")
        for index in range(6):  # each tick is saved by the page's script
            boxes.nth(index).check()
            expect(message).not_to_have_text("")
            page.wait_for_timeout(300)
        # the filters and the first ticked rows, below the selection bar that stays on top
        page.evaluate(
            "window.scrollTo(0, document.getElementById('filters-heading')"
            ".getBoundingClientRect().top + window.scrollY - 100)"
        )
        page.screenshot(path=out / "officer-2-search.png")

        page.get_by_role("link", name="Xem danh sách").first.click()
        expect(page.get_by_role("heading", name="Xem danh sách trước khi ký")).to_be_visible()
        page.screenshot(path=out / "officer-3-preview.png")

        page.get_by_role("button", name="Ký số").click()
        asked = terminal.wait_for("Cho phép? [c/K]:", ready)
        terminal.type("c")
        consent = terminal.wait_for("[c/K]:", asked)
        expect(page.locator("#sign-code-value")).not_to_have_text("")
        page.locator("#sign-box").scroll_into_view_if_needed()
        page.screenshot(path=out / "officer-4-waiting.png")
        start = terminal.text.rfind("=" * 72, 0, consent)
        start = terminal.text.rfind("=" * 72, 0, start - 1)
        (out / "officer-4-agent.txt").write_text(
            terminal.text[start:consent].replace("\r", "") + "\n", encoding="utf-8"
        )
        terminal.type("c")
        terminal.wait_for("Nhập mã PIN", consent)
        terminal.type(PIN)

        expect(page.locator("h1", has_text="Kết quả ký lô")).to_be_visible()
        page.screenshot(path=out / "officer-5-result.png")
        page.goto(f"{URL}/signing/batches")
        page.screenshot(path=out / "officer-6-batches.png")
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kyso-screens-") as folder:
        terminal = Terminal(Path(folder) / "demo-data")
        try:
            walk(args.out, terminal)
        finally:
            terminal.stop()
    for path in sorted(args.out.glob("officer-*")):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

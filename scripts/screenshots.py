"""Screenshots of the desktop app (Vietnamese), and the check that no text is clipped.

    xvfb-run -a .venv/bin/python scripts/screenshots.py            # -> docs/screenshots/*.png
    .venv/bin/python scripts/screenshots.py --out DIR              # elsewhere
    QT_SCALE_FACTOR=1.5 .venv/bin/python scripts/screenshots.py --check-clipping

The app runs for real: a SoftHSM2 token is provisioned in a temporary folder, the agent listens
on a free port, the window reads the token through the hot-plug monitor. The dialogs show a
sample batch (a consent request as the service would build it from a verified manifest).
Screenshots are grabbed from the X server (``QScreen.grabWindow``), so run it under Xvfb;
``--check-clipping`` works on any platform, offscreen included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QWidget,
)

from kyso.agent.config import AgentConfig, KnownModule, discover_modules
from kyso.agent.manifest import BatchManifest, Summary
from kyso.agent.protocol import ErrorCode
from kyso.agent.service import BatchOutcome, ConsentRequest
from kyso.agent.token import softhsm
from kyso.agent.token.model import Algorithm, PinStatus, TokenInfo
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.ui.app import DesktopApp
from kyso.agent.ui.dialogs import ConsentDialog, PairingDialog, ProgressDialog
from kyso.agent.ui.settings import OriginRow, SettingsDialog

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "https://tiemchung.hcm.example.vn"
NAMES = ("main-window", "consent-pin", "progress", "settings", "driver-waiting")


@dataclass(frozen=True)
class Shot:
    name: str
    path: Path
    width: int  # expected pixel size of the image
    height: int


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_until(condition: object, timeout_ms: int = 10_000) -> None:
    waited = 0
    while not condition() and waited < timeout_ms:  # type: ignore[operator]
        wait(50)
        waited += 50


class StuckDriver:
    """The real token behind a slot list that waits until ``release()``: the picture of Start
    waiting for a USB token driver that does not answer (the tests use a real hanging PKCS#11
    module, tests/support/hanging_pkcs11.c)."""

    def __init__(self, token: Pkcs11Token) -> None:
        self._token = token
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def present_tokens(self) -> list[TokenInfo]:
        self._released.wait()
        return self._token.present_tokens()

    def refresh_presence(self) -> list[TokenInfo]:
        self._released.wait()
        return self._token.refresh_presence()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._token, name)


class Gallery:
    """The app with a real token, and every window the screenshots and the clipping check need."""

    def __init__(self, workdir: Path, language: str = "vi") -> None:
        self.token_info = softhsm.provision(workdir / "hsm", label="VNPT-CA Token")
        self.token = Pkcs11Token(self.token_info.module_path)
        config = AgentConfig(state_dir=workdir / "state")  # the default port, shown in Settings
        self.app = DesktopApp(
            config, self.token, language=language, port=0, use_tray=False, hotplug_interval=0.5
        )
        self.language = language
        self.app.controller.start()
        wait_until(lambda: self.app.controller.snapshot.present)
        certificate = next(
            c
            for c in self.app.controller.snapshot.certificates
            if c.fingerprint_sha256 == self.token_info.certificates["p256"].fingerprint_sha256
        )
        manifest = BatchManifest(
            batch_id="B2022-0315-0042",
            origin=ORIGIN,
            certificate=certificate.fingerprint_sha256,
            algorithm=Algorithm.ECDSA_SHA256,
            count=250,
            digests="sha256:" + "0" * 64,
            summary=Summary(
                facility="Trạm Y tế Phường Bến Nghé, Quận 1",
                people=117,
                doses=250,
                first_date=date(2022, 3, 1),
                last_date=date(2022, 3, 31),
            ),
            code="K7Q-4MZ",
            issued_at=0,
            expires_at=0,
        )
        self.request = ConsentRequest(ORIGIN, certificate, manifest, PinStatus(count_low=True))
        self.app.controller.record_outcome(
            BatchOutcome(ORIGIN, "B2022-0314-0041", 300, 300, None, datetime.now(UTC))
        )
        # A second window whose Start waits for a driver that does not answer.
        self.stuck = StuckDriver(self.token)
        self.waiting = DesktopApp(
            AgentConfig(state_dir=workdir / "state-waiting"),
            self.stuck,  # type: ignore[arg-type]
            language=language,
            port=0,
            use_tray=False,
        )
        self.waiting.controller.snapshot = self.app.controller.snapshot  # as read before
        self.waiting.controller.start()

    def windows(self) -> dict[str, QWidget]:
        app, language = self.app, self.language
        consent = ConsentDialog(self.request, language)
        consent.pin_edit.setText("123456")
        consent.pin_edit.deselect()
        progress = ProgressDialog(language)
        progress.set_progress(1200, 3000)
        rows = [
            OriginRow("https://tiemchung.gov.vn", "a3" * 32, machine=True),
            OriginRow(ORIGIN, "5c" * 32, machine=False),
        ]
        modules = [
            *discover_modules(),
            KnownModule("OpenDNSSEC", "SoftHSM 2", self.token_info.module_path),
        ]
        settings = SettingsDialog(
            replace(app.settings_values(), module_locked=False),
            modules,
            rows,
            lambda origin, done: done(None),
            language,
        )
        pairing = PairingDialog(ORIGIN, language)
        pairing.show_fingerprint("5c" * 32)
        result = ProgressDialog(language)
        result.show_outcome(
            BatchOutcome(
                ORIGIN, "B2022-0315-0042", 250, 0, ErrorCode.PIN_INCORRECT, datetime.now(UTC)
            ),
            PinStatus(count_low=True, final_try=True),
        )
        return {
            "main-window": app.window,
            "consent-pin": consent,
            "progress": progress,
            "settings": settings,
            "pairing": pairing,
            "result": result,
            "driver-waiting": self.waiting.window,
        }

    def close(self) -> None:
        self.stuck.release()
        self.waiting.shutdown()
        self.app.shutdown()
        self.token.close()


def show(widget: QWidget) -> None:
    widget.show()
    widget.raise_()
    widget.activateWindow()
    wait(300)


def take_screenshots(out: Path, workdir: Path) -> list[Shot]:
    out.mkdir(parents=True, exist_ok=True)
    gallery = Gallery(workdir)
    shots: list[Shot] = []
    try:
        windows = gallery.windows()
        for name in NAMES:
            widget = windows[name]
            show(widget)
            wait(1200 if name == "consent-pin" else 200)  # the Sign button is enabled after 1 s
            screen = widget.screen()
            ratio = screen.devicePixelRatio()
            pixmap = screen.grabWindow(widget.winId())
            path = out / f"{name}.png"
            if not pixmap.save(str(path), "PNG"):
                raise RuntimeError(f"could not write {path}")
            shots.append(
                Shot(name, path, round(widget.width() * ratio), round(widget.height() * ratio))
            )
            widget.hide()
    finally:
        gallery.close()
    return shots


def clipped(widget: QWidget) -> list[str]:
    """Every label, button, field and box of the window whose text does not fit its geometry."""
    problems: list[str] = []
    children: list[QWidget] = [
        *widget.findChildren(QLabel),
        *widget.findChildren(QAbstractButton),
        *widget.findChildren(QComboBox),
        *widget.findChildren(QLineEdit),
        *widget.findChildren(QAbstractSpinBox),
    ]
    for child in children:
        if not child.isVisibleTo(widget) or child.objectName().startswith("qt_"):
            continue  # hidden, or a part of a Qt widget (the spin box's own line edit)
        size = child.size()
        hint = child.sizeHint()
        text = child.text() if isinstance(child, QLabel | QAbstractButton) else child.objectName()
        if isinstance(child, QLabel) and child.wordWrap():
            needed = child.heightForWidth(size.width())
            if needed > size.height():
                problems.append(f"{text!r}: needs {needed}px high, has {size.height()}")
            if child.minimumSizeHint().width() > size.width():
                problems.append(f"{text!r}: a word is wider than {size.width()}px")
        elif hint.width() > size.width() or hint.height() > size.height():
            need, has = f"{hint.width()}x{hint.height()}", f"{size.width()}x{size.height()}"
            problems.append(f"{text!r}: needs {need}, has {has}")
    return problems


def check_clipping(workdir: Path, language: str) -> dict[str, list[str]]:
    gallery = Gallery(workdir, language)
    try:
        report: dict[str, list[str]] = {}
        for name, widget in gallery.windows().items():
            show(widget)
            report[name] = clipped(widget)
            widget.hide()
        return report
    finally:
        gallery.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--check-clipping", action="store_true")
    parser.add_argument("--language", choices=["vi", "en"], default="vi")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Kyso")
    with tempfile.TemporaryDirectory(prefix="kyso-shots-") as tmp:
        if args.check_clipping:
            report = check_clipping(Path(tmp), args.language)
            if args.json:
                print(json.dumps(report, ensure_ascii=False))
            for name, problems in report.items():
                for problem in problems:
                    print(f"{name}: {problem}", file=sys.stderr)
            return 1 if any(report.values()) else 0
        if os.environ.get("QT_QPA_PLATFORM", "") == "offscreen":
            print("screenshots need a display: run under xvfb-run -a", file=sys.stderr)
            return 2
        shots = take_screenshots(args.out, Path(tmp))
        if args.json:
            print(json.dumps([[s.name, str(s.path), s.width, s.height] for s in shots]))
        else:
            for shot in shots:
                print(f"{shot.path} ({shot.width}x{shot.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

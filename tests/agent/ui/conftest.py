"""Desktop app tests: Qt on the offscreen platform (set before any Qt import), real tokens."""

from __future__ import annotations

import gc
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from collections.abc import Callable, Iterator
from datetime import date

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from kyso.agent.manifest import BatchManifest, Summary
from kyso.agent.service import ConsentRequest
from kyso.agent.token.model import Algorithm, CertificateInfo, PinStatus
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken
from kyso.agent.ui.collector import GuiThreadCollector
from kyso.agent.ui.controller import AgentController

ORIGIN = "https://tiemchung.example.vn"


@pytest.fixture(autouse=True)
def collector_on_the_qt_thread(qapp: QApplication) -> Iterator[GuiThreadCollector]:
    """As in the app (``ui.app.main``): cycles are collected on the Qt thread, never on the
    asyncio or token threads, where destroying a Qt object can crash the process."""
    gc.collect()  # what earlier tests left, collected here, on the Qt thread
    collector = GuiThreadCollector(qapp)
    yield collector
    collector.stop()
    collector.deleteLater()


@pytest.fixture
def p256_certificate(token: Pkcs11Token, softhsm: ProvisionedToken) -> CertificateInfo:
    """The P-256 certificate as the token layer reads it from SoftHSM."""
    wanted = softhsm.certificates["p256"].fingerprint_sha256
    return next(c for c in token.list_certificates() if c.fingerprint_sha256 == wanted)


def make_manifest(certificate: CertificateInfo, count: int = 250) -> BatchManifest:
    return BatchManifest(
        batch_id="B2022-0315-0042",
        origin=ORIGIN,
        certificate=certificate.fingerprint_sha256,
        algorithm=Algorithm.ECDSA_SHA256,
        count=count,
        digests="sha256:" + "0" * 64,
        summary=Summary(
            facility="Trạm Y tế Phường Bến Nghé, Quận 1",
            people=120,
            doses=count,
            first_date=date(2022, 3, 1),
            last_date=date(2022, 3, 31),
        ),
        code="K7Q-4MZ",
        issued_at=1_700_000_000,
        expires_at=1_700_000_600,
    )


@pytest.fixture
def consent_request(
    p256_certificate: CertificateInfo,
) -> Callable[..., ConsentRequest]:
    def make(pin_status: PinStatus | None = None, count: int = 250) -> ConsentRequest:
        return ConsentRequest(
            origin=ORIGIN,
            certificate=p256_certificate,
            manifest=make_manifest(p256_certificate, count),
            pin_status=pin_status or PinStatus(),
        )

    return make


def start_and_wait(qtbot: QtBot, controller: AgentController, timeout: int = 15_000) -> bool:
    """Presses Start (which returns at once) and waits until it listens or fails; True if it
    listens."""
    controller.start()
    qtbot.waitUntil(lambda: not controller.waiting, timeout=timeout)
    return controller.listening

"""The headless front-end: consent and PIN prompts on the terminal.

Same texts as the desktop dialogs (``locales/dialogs.toml``); same safety rules: the agent, not
the page, writes every line except the framed summary; the default answer is "no"; input typed
before a prompt appeared is discarded so a stray Enter can never approve.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from kyso.agent.expiry import expiry_warning
from kyso.agent.i18n import tr
from kyso.agent.service import BatchOutcome, ConsentRequest


def _discard_typeahead(stream: TextIO) -> None:
    """Drops what was typed before the prompt (POSIX terminals; a no-op elsewhere)."""
    try:
        import termios

        if stream.isatty():
            termios.tcflush(stream.fileno(), termios.TCIFLUSH)
    except (ImportError, OSError, ValueError):
        pass


class ConsoleUI:
    """UserInterface on a terminal. One prompt at a time (the service guarantees it)."""

    def __init__(
        self,
        language: str = "vi",
        *,
        out: TextIO | None = None,
        read_line: Callable[[str], str] | None = None,
        read_secret: Callable[[str], str] | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self._language = language
        self._out = out or sys.stdout
        self._stdin = stdin or sys.stdin
        self._read_line = read_line or input
        self._read_secret = read_secret or getpass.getpass
        self._lock = threading.Lock()
        self._last_progress = -1

    def _t(self, key: str, **values: object) -> str:
        return tr(f"dialogs.{key}", self._language, **values)

    def _say(self, *lines: str) -> None:
        with self._lock:
            for line in lines:
                print(line, file=self._out)
            self._out.flush()

    def _ask_yes(self, question: str) -> bool:
        _discard_typeahead(self._stdin)
        try:
            answer = self._read_line(question)
        except (EOFError, KeyboardInterrupt):
            return False
        return answer.strip().lower() == self._t("consent_yes")

    async def approve_origin(self, origin: str) -> bool:
        return await asyncio.to_thread(self._ask_yes, self._t("origin_question", origin=origin))

    async def ask_consent_and_pin(self, request: ConsentRequest) -> str | None:
        return await asyncio.to_thread(self._consent_and_pin, request)

    def consent_lines(self, request: ConsentRequest) -> list[str]:
        """The dialog's text, line by line: the page's summary framed as the platform's words."""
        m = request.manifest
        cert = request.certificate
        lines = [
            "",
            "=" * 72,
            self._t("consent_title"),
            "=" * 72,
            self._t("consent_origin", origin=request.origin),
            self._t(
                "consent_certificate",
                subject=cert.subject,
                not_after=cert.not_after.date().isoformat(),
            ),
            *filter(None, [expiry_warning(cert.not_after, self._language)]),
            self._t("consent_count", count=m.count),
            "",
            self._t("consent_summary_title"),
            "  +" + "-" * 66,
        ]
        summary = self._t(
            "consent_summary",
            facility=m.summary.facility,
            people=m.summary.people,
            doses=m.summary.doses,
            first_date=m.summary.first_date.isoformat(),
            last_date=m.summary.last_date.isoformat(),
        )
        lines += [f"  | {line}" for line in summary.splitlines()]
        lines += ["  +" + "-" * 66, "", self._t("consent_code", code=m.code)]
        if request.pin_status.final_try:
            lines.append(self._t("pin_final_try"))
        elif request.pin_status.count_low:
            lines.append(self._t("pin_count_low"))
        return lines

    def _consent_and_pin(self, request: ConsentRequest) -> str | None:
        self._say(*self.consent_lines(request))
        if not self._ask_yes(self._t("consent_question")):
            self._say(self._t("declined"))
            return None
        _discard_typeahead(self._stdin)
        try:
            pin = self._read_secret(self._t("pin_prompt"))
        except (EOFError, KeyboardInterrupt):
            pin = ""
        if not pin:
            self._say(self._t("declined"))
            return None
        self._last_progress = -1
        return pin

    def signing_progress(self, signed: int, total: int) -> None:
        # One line per 10 % is enough on a terminal.
        step = max(total // 10, 1)
        if signed == total or signed // step != self._last_progress // step:
            self._last_progress = signed
            self._say(self._t("progress", signed=signed, total=total))

    def batch_finished(self, outcome: BatchOutcome) -> None:
        if outcome.error is None:
            key, error = "finished_ok", ""
        else:
            key, error = "finished_error", tr(f"errors.{outcome.error.lower()}", self._language)
        self._say(
            self._t(
                key,
                batch_id=outcome.batch_id,
                signed=outcome.signed,
                total=outcome.total,
                error=error,
            )
        )

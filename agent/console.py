"""The headless front-end: consent and PIN prompts on the terminal.

Same texts as the desktop dialogs (``locales/dialogs.toml``); same safety rules: the agent, not
the page, writes every line except the framed summary; the default answer is "no"; input typed
before a prompt appeared is discarded so a stray Enter can never approve.

The console owns the terminal while a question is open:

- log lines (``ConsoleLogHandler``; they are also in the log file) are held while a question is
  open and shown after it is answered, so they never scroll the consent text out of view;
- anything else printed meanwhile is followed by the whole question again;
- a question whose page disconnected or cancelled is withdrawn (the service cancels it): the
  console stops waiting for the answer, says so, and the next page is served. On POSIX the
  prompt reads the terminal itself (``select``) so that it can stop; elsewhere, and with the
  injected readers of the tests, it waits for the answer and then discards it.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO, TypeVar

from kyso.agent.certificate_facts import certificate_facts
from kyso.agent.expiry import expiry_warning
from kyso.agent.i18n import Count, tr
from kyso.agent.service import BatchOutcome, ConsentRequest

T = TypeVar("T")

# How often a waiting prompt checks whether it was withdrawn.
WITHDRAW_POLL_SECONDS = 0.1


def _discard_typeahead(stream: TextIO) -> None:
    """Drops what was typed before the prompt (POSIX terminals; a no-op elsewhere)."""
    try:
        import termios

        if stream.isatty():
            termios.tcflush(stream.fileno(), termios.TCIFLUSH)
    except (ImportError, OSError, ValueError):
        pass


def _stdin_fd(stream: TextIO) -> int | None:
    """The descriptor the prompt can poll, or None (not POSIX, or no real descriptor)."""
    if os.name != "posix":
        return None
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def _echo_off(fd: int) -> list[Any] | None:
    """Turns the terminal's echo off; its previous settings (None: not a terminal)."""
    import termios

    if not os.isatty(fd):
        return None
    saved = termios.tcgetattr(fd)
    hidden = termios.tcgetattr(fd)
    hidden[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, hidden)
    return saved


def _echo_restore(fd: int, saved: list[Any]) -> None:
    import termios

    termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class ConsoleUI:
    """UserInterface on a terminal. One question at a time, withdrawal notice included."""

    def __init__(
        self,
        language: str = "vi",
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        read_line: Callable[[str], str] | None = None,
        read_secret: Callable[[str], str] | None = None,
        stdin: TextIO | None = None,
        log_file: Path | None = None,
        remembers: bool = False,
    ) -> None:
        """``remembers``: the service remembers a "yes" to an origin across runs (the prompt
        says so, and how to undo it)."""
        self._language = language
        self._remembers = remembers
        self._out = out or sys.stdout
        self._err = err or (self._out if out is not None else sys.stderr)
        self._stdin = stdin or sys.stdin
        self._read_line = read_line
        self._read_secret = read_secret
        self._log_file = log_file
        self._lock = threading.Lock()  # every write to the terminal, and the fields below
        self._question_lock = threading.Lock()  # one question (and its notices) at a time
        self._screen: list[str] | None = None  # the open question's lines, question last
        self._held: list[str] = []  # log lines that arrived while a question was open
        self._last_progress = -1

    def _t(self, key: str, **values: object) -> str:
        return tr(f"dialogs.{key}", self._language, **values)

    # --- the terminal ------------------------------------------------------------------------

    def _print(self, stream: TextIO, lines: list[str] | tuple[str, ...]) -> None:
        for line in lines:
            print(line, file=stream)
        stream.flush()

    def _say(self, *lines: str) -> None:
        """Prints lines; if a question is open, shows it whole again below them."""
        with self._lock:
            if self._screen is None:
                self._print(self._out, lines)
                return
            self._print(self._out, ["", *lines])
            self._show_screen()

    def _show_screen(self) -> None:
        assert self._screen is not None
        *lines, question = self._screen
        self._print(self._out, lines)
        self._out.write(question)
        self._out.flush()

    def log_line(self, line: str) -> None:
        """A log line for the terminal: shown now, or held until the open question is answered."""
        with self._lock:
            if self._screen is not None:
                self._held.append(line)
            else:
                self._print(self._err, [line])

    # --- questions ---------------------------------------------------------------------------

    async def _question(self, fn: Callable[[threading.Event], T]) -> T:
        """Runs a question in a worker thread; cancelling the coroutine withdraws it."""
        withdraw = threading.Event()
        try:
            return await asyncio.to_thread(fn, withdraw)
        except asyncio.CancelledError:
            withdraw.set()
            raise

    def _ask(
        self, lines: list[str], question: str, withdraw: threading.Event, *, secret: bool = False
    ) -> str | None:
        """Shows ``lines`` and ``question``; the answer, "" at end of input, None if withdrawn."""
        _discard_typeahead(self._stdin)
        reader = self._read_secret if secret else self._read_line
        fd = _stdin_fd(self._stdin) if reader is None else None
        # Echo goes off before the question shows: a PIN typed the moment it appears (or typed
        # ahead) is never printed on the terminal.
        saved = _echo_off(fd) if fd is not None and secret else None
        with self._lock:
            self._screen = [*lines, question]
            if fd is not None:
                self._show_screen()
            else:
                self._print(self._out, lines)  # the reader shows the question
        answer: str | None = None
        try:
            if fd is not None:
                answer = self._read_fd(fd, withdraw)
            else:
                fallback = getpass.getpass if secret else input
                try:
                    answer = (reader or fallback)(question)
                except (EOFError, KeyboardInterrupt):
                    answer = ""
                if withdraw.is_set():
                    answer = None
        finally:
            if saved is not None and fd is not None:
                _echo_restore(fd, saved)
                with self._lock:
                    self._print(self._out, [""])  # the Enter was not echoed
            with self._lock:
                self._screen = None
                held, self._held = self._held, []
                if answer is None and withdraw.is_set():
                    self._print(self._out, ["", self._t("withdrawn")])
                if held:
                    header = self._t(
                        "held_logs", count=len(held), path=self._log_file or "agent.log"
                    )
                    self._print(self._err, [header, *held])
        return answer

    def _read_fd(self, fd: int, withdraw: threading.Event) -> str | None:
        """One line from the terminal, polled so that a withdrawal stops the wait (POSIX)."""
        import select

        data = b""
        while b"\n" not in data:
            if withdraw.is_set():
                return None
            ready, _, _ = select.select([fd], [], [], WITHDRAW_POLL_SECONDS)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:  # end of input: the answer is "no"
                break
            data += chunk
        return data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")

    def _is_yes(self, answer: str | None) -> bool:
        return answer is not None and answer.strip().lower() == self._t("consent_yes")

    async def approve_origin(self, origin: str) -> bool:
        return await self._question(lambda withdraw: self._approve_origin(origin, withdraw))

    def _approve_origin(self, origin: str, withdraw: threading.Event) -> bool:
        with self._question_lock:
            question = self._t("origin_question", origin=origin)
            lines = [self._t("origin_remembered", origin=origin)] if self._remembers else []
            return self._is_yes(self._ask(lines, question, withdraw))

    async def ask_consent_and_pin(self, request: ConsentRequest) -> str | None:
        return await self._question(lambda withdraw: self._consent_and_pin(request, withdraw))

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
            self._t("consent_certificate", **asdict(certificate_facts(cert))),
            *filter(None, [expiry_warning(cert.not_after, self._language)]),
            self._t("consent_count", count=Count(m.count)),
            "",
            self._t("consent_summary_title"),
            "  +" + "-" * 66,
        ]
        summary = self._t(
            "consent_summary",
            facility=m.summary.facility,
            people=Count(m.summary.people),
            doses=Count(m.summary.doses),
            first_date=m.summary.first_date,
            last_date=m.summary.last_date,
        )
        lines += [f"  | {line}" for line in summary.splitlines()]
        lines += ["  +" + "-" * 66, "", self._t("consent_code", code=m.code)]
        if request.pin_status.final_try:
            lines.append(self._t("pin_final_try"))
        elif request.pin_status.count_low:
            lines.append(self._t("pin_count_low"))
        return lines

    def _consent_and_pin(self, request: ConsentRequest, withdraw: threading.Event) -> str | None:
        with self._question_lock:
            answer = self._ask(self.consent_lines(request), self._t("consent_question"), withdraw)
            if answer is None:
                return None  # withdrawn: the notice is shown
            if not self._is_yes(answer):
                self._say(self._t("declined"))
                return None
            pin = self._ask([], self._t("pin_prompt"), withdraw, secret=True)
            if pin is None:
                return None
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


class ConsoleLogHandler(logging.Handler):
    """Log records for the terminal, through the console (held while a question is open)."""

    def __init__(self, console: ConsoleUI, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.log_line(self.format(record))
        except Exception:
            self.handleError(record)


def route_terminal_logging(console: ConsoleUI) -> None:
    """Replaces the root logger's terminal handlers with one that goes through ``console``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
            routed = ConsoleLogHandler(console, handler.level)
            routed.setFormatter(handler.formatter)
            root.addHandler(routed)

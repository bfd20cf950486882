"""Small building blocks shared by the window and the dialogs."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QWidget

from kyso.agent.i18n import tr


def t(key: str, language: str, **values: Any) -> str:
    """A text of the desktop app (``ui.*``) or of the shared dialogs (``dialogs.*``)."""
    return tr(key if "." in key else f"ui.{key}", language, **values)


def label(
    text: str = "",
    *,
    parent: QWidget | None = None,
    bold: bool = False,
    scale: float = 1.0,
    wrap: bool = True,
    name: str | None = None,
) -> QLabel:
    """A plain-text label: page or token data can never be rendered as rich text."""
    widget = QLabel(parent)
    widget.setTextFormat(Qt.TextFormat.PlainText)
    widget.setText(text)
    widget.setWordWrap(wrap)
    widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if bold or scale != 1.0:
        font = QFont(widget.font())
        font.setBold(bold)
        if scale != 1.0:
            font.setPointSizeF(font.pointSizeF() * scale)
        widget.setFont(font)
    if name:
        widget.setObjectName(name)
    return widget


def short_subject(subject: str) -> str:
    """The CN of an RFC 4514 subject (what the officer recognises), else the whole subject."""
    for part in _split_rdns(subject):
        key, _, value = part.partition("=")
        if key.strip().upper() == "CN" and value:
            return value.replace("\\,", ",").replace("\\", "")
    return subject


def _split_rdns(subject: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in subject:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char in ",+":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts

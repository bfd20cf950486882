"""Small building blocks shared by the window and the dialogs."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractButton, QBoxLayout, QLabel, QSizePolicy, QWidget

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


def keep_buttons_whole(widget: QWidget) -> None:
    """Layouts may squeeze a button below its size hint (clipping its text); forbid that."""
    for button in widget.findChildren(QAbstractButton):
        policy = button.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Minimum)
        button.setSizePolicy(policy)


def fit_to_text(widget: QWidget, min_width: int, *, exact: bool = False) -> None:
    """Gives a top-level window room for its texts: at least ``min_width`` wide (more if its
    buttons need it), and tall enough for its wrapped labels at the width it has.

    A fixed minimum width on the window itself would override what the layout needs, so the
    width goes in as a strut of the (vertical) layout. Qt sizes a window from its size hint,
    which ignores how many lines a wrapped label takes at the actual width; at large font sizes
    the window must grow to the layout's height-for-width. Call at show (``exact``: the height
    the texts need, no more) and after text changes (grow only, never shrink what the officer
    enlarged).
    """
    layout = widget.layout()
    if layout is None:
        return
    if not widget.property("kyso_strut"):
        if isinstance(layout, QBoxLayout):
            layout.addStrut(min_width)
        widget.setProperty("kyso_strut", True)
    layout.invalidate()
    layout.activate()
    width = max(widget.width(), layout.minimumSize().width())
    needed = layout.minimumSize().height()
    if layout.hasHeightForWidth():
        needed = max(needed, layout.totalHeightForWidth(width))
    height = needed if exact else max(widget.height(), needed)
    if (width, height) != (widget.width(), widget.height()):
        widget.resize(width, height)

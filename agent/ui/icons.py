"""Tray and window icons, drawn with QPainter: one colour and one glyph per state.

Colour alone is not enough (colour-blind officers, monochrome taskbars), so each state also has
its own glyph: a square (stopped), a check (listening), an exclamation mark (no token), a pen
nib dot trail (signing), clock hands (waiting for the token's driver).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

from kyso.agent.ui.controller import TrayState

COLOURS = {
    TrayState.STOPPED: QColor("#6b7280"),
    TrayState.LISTENING: QColor("#15803d"),
    TrayState.NO_TOKEN: QColor("#d97706"),
    TrayState.SIGNING: QColor("#1d4ed8"),
    TrayState.WAITING: QColor("#7c3aed"),
}
SIZES = (16, 20, 24, 32, 48, 64, 128)


def status_pixmap(status: TrayState, size: int) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(COLOURS[status]))
    painter.drawEllipse(QRectF(s * 0.04, s * 0.04, s * 0.92, s * 0.92))
    white = QPen(QColor("white"))
    white.setWidthF(max(1.5, s * 0.11))
    white.setCapStyle(Qt.PenCapStyle.RoundCap)
    white.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    painter.setPen(white)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    if status is TrayState.STOPPED:
        painter.setBrush(QBrush(QColor("white")))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawRect(QRectF(s * 0.32, s * 0.32, s * 0.36, s * 0.36))
    elif status is TrayState.LISTENING:
        path = QPainterPath(QPointF(s * 0.28, s * 0.52))
        path.lineTo(QPointF(s * 0.44, s * 0.68))
        path.lineTo(QPointF(s * 0.72, s * 0.34))
        painter.drawPath(path)
    elif status is TrayState.NO_TOKEN:
        painter.drawLine(QPointF(s * 0.5, s * 0.24), QPointF(s * 0.5, s * 0.56))
        painter.drawPoint(QPointF(s * 0.5, s * 0.74))
    elif status is TrayState.WAITING:
        painter.drawLine(QPointF(s * 0.5, s * 0.5), QPointF(s * 0.5, s * 0.26))
        painter.drawLine(QPointF(s * 0.5, s * 0.5), QPointF(s * 0.68, s * 0.62))
    else:
        for x in (0.3, 0.5, 0.7):
            painter.drawPoint(QPointF(s * x, s * 0.5))
    painter.end()
    return pixmap


def status_icon(status: TrayState) -> QIcon:
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(status_pixmap(status, size))
    return icon

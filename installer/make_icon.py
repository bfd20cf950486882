"""Writes installer/kyso-agent.ico: the tray's "listening" icon (agent/ui/icons.py) at the sizes
Windows asks an executable and a shortcut for. Run it again when the icon's drawing changes:

    QT_QPA_PLATFORM=offscreen .venv/bin/python installer/make_icon.py
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256)
TARGET = Path(__file__).with_name("kyso-agent.ico")


def png_images() -> list[tuple[int, bytes]]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication

    from kyso.agent.ui.controller import TrayState
    from kyso.agent.ui.icons import status_pixmap

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    images = []
    for size in SIZES:
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not status_pixmap(TrayState.LISTENING, size).save(buffer, "PNG"):
            raise RuntimeError(f"could not render the {size}px icon")
        images.append((size, bytes(data.data())))
    return images


def ico(images: list[tuple[int, bytes]]) -> bytes:
    """An ICO file whose images are PNGs (Windows Vista and later read them at every size)."""
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = len(header) + 16 * len(images)
    directory, blobs = b"", b""
    for size, png in images:
        side = 0 if size >= 256 else size  # 0 means 256 in the ICO directory
        directory += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset)
        blobs += png
        offset += len(png)
    return header + directory + blobs


if __name__ == "__main__":
    TARGET.write_bytes(ico(png_images()))
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")

"""Reading the QR code in a picture someone uploaded (the public verify page, ``dcc verify``).

Outside pictures are decoded only as PNG or JPEG, never with a parser that runs an external
program, and never in the web process:

- Pillow opens the bytes with ``formats=["PNG", "JPEG"]``: an EPS/PostScript file (which Pillow
  renders by running Ghostscript), GIF, TIFF, BMP, WebP... is refused as "not a PNG/JPEG
  picture". Importing this module also unregisters Pillow's EPS plugin process-wide and tells it
  there is no Ghostscript, so no other code path of the platform can run ``gs`` either. (The
  opener set is not cut down to PNG/JPEG for the whole process: fpdf2 re-opens the CCITT TIFF it
  writes itself for the 1-bit QR code in the passport PDF.)
- The picture is decoded, and its QR code read, in a child process (``python -m`` this module)
  with a wall-clock bound (``DECODE_SECONDS``), a CPU-time and an address-space limit; a child
  that overruns is killed. At most ``CONCURRENT_DECODES`` children run per web process; a further
  picture waits up to ``DECODE_SECONDS`` for a free one, then is told to try again.
- The file is at most ``MAX_PICTURE_BYTES``; the picture at most ``MAX_PICTURE_PIXELS``, read
  from its header before any pixel is decoded (a few KB of PNG can inflate to gigabytes).

``PictureRefused`` carries the catalogue key (``locales/passport.toml``) that says what happened
and what to do, and an English technical detail.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from typing import Any, Final

from PIL import EpsImagePlugin, Image

__all__ = [
    "CONCURRENT_DECODES",
    "DECODE_SECONDS",
    "FORMATS",
    "MAX_PICTURE_BYTES",
    "MAX_PICTURE_PIXELS",
    "PictureRefused",
    "read_qr",
]

FORMATS: Final = ("PNG", "JPEG")
MAX_PICTURE_BYTES: Final = 5 * 1024 * 1024
# A phone photo of a QR code needs no more; PIL's own bomb limit (~89 MP) lets 1.7 GB through.
MAX_PICTURE_PIXELS: Final = 16_000_000
DECODE_SECONDS: Final = 5.0  # wall clock, child start included (about 0.3 s)
CONCURRENT_DECODES: Final = 2
# The child's address space: Python with Pillow and zxing-cpp maps ~250 MB; a 16 MP RGB
# picture and zxing's copy of it take ~100 MB more.
CHILD_MEMORY_BYTES: Final = 768 * 1024 * 1024

_slots = threading.BoundedSemaphore(CONCURRENT_DECODES)


def _without_external_programs() -> None:
    """Pillow's plugins that run another program to decode (EPS: Ghostscript) are dropped."""
    Image.init()  # register every plugin once now, so that nothing registers them again later
    for name in ("EPS",):
        Image.OPEN.pop(name, None)
        Image.SAVE.pop(name, None)
        Image.SAVE_ALL.pop(name, None)
        Image.MIME.pop(name, None)
        if name in Image.ID:
            Image.ID.remove(name)
        for extension in [e for e, f in Image.EXTENSION.items() if f == name]:
            del Image.EXTENSION[extension]
    EpsImagePlugin.gs_binary = False  # has_ghostscript() is False: gs is never looked for


_without_external_programs()


class PictureRefused(ValueError):
    """The picture cannot be read; ``key`` is the catalogue text, ``detail`` technical English."""

    def __init__(self, key: str, detail: str, **values: Any) -> None:
        super().__init__(detail)
        self.key = key
        self.detail = detail
        self.values = values


def read_qr(data: bytes, *, timeout: float = DECODE_SECONDS) -> str:
    """The text of the one QR code in a PNG/JPEG picture; PictureRefused otherwise."""
    if len(data) > MAX_PICTURE_BYTES:
        raise PictureRefused(
            "passport.picture_too_large_file",
            f"the file has more than {MAX_PICTURE_BYTES} bytes",
            megabytes=MAX_PICTURE_BYTES // (1024 * 1024),
        )
    if not _slots.acquire(timeout=timeout):
        raise PictureRefused("passport.picture_busy", "every picture decoder is busy")
    try:
        return _in_child(data, timeout)
    finally:
        _slots.release()


def _in_child(data: bytes, timeout: float) -> str:
    # -I: no user site-packages, no PYTHON* variables. PATH is kept as it is (nothing the child
    # runs needs it; tests put a fake gs on it to show that nothing runs it).
    command = [sys.executable, "-I", "-m", __name__]
    environment = {"PATH": os.environ.get("PATH", os.defpath)}
    try:
        finished = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            command,
            input=data,
            capture_output=True,
            timeout=timeout,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        raise PictureRefused(
            "passport.picture_too_slow",
            f"decoding took longer than {timeout:g} s",
            seconds=f"{timeout:g}",
        ) from exc
    try:
        answer = json.loads(finished.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        # Killed by its CPU or memory limit, or crashed inside a decoder.
        raise PictureRefused(
            "passport.picture_damaged",
            f"the decoder stopped (exit status {finished.returncode})",
        )
    if isinstance(answer.get("text"), str):
        return str(answer["text"])
    raise PictureRefused(
        str(answer.get("key", "passport.picture_damaged")),
        str(answer.get("detail", "")),
        **dict(answer.get("values") or {}),
    )


def decode(data: bytes) -> str:
    """The decoding itself, as the child runs it (in-process: only for the child)."""
    import zxingcpp
    from PIL import UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=list(FORMATS))  # reads the header only
    except UnidentifiedImageError as exc:
        raise PictureRefused("passport.picture_not_png_jpeg", f"not a PNG/JPEG: {exc}") from exc
    except Image.DecompressionBombError as exc:  # beyond twice MAX_IMAGE_PIXELS, from the header
        raise _too_many_pixels(str(exc)) from exc
    width, height = image.size
    if width * height > MAX_PICTURE_PIXELS:
        raise _too_many_pixels(f"the picture is {width}×{height} pixels")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PictureRefused("passport.picture_damaged", f"the picture is damaged: {exc}") from exc
    found = [
        r
        for r in zxingcpp.read_barcodes(image)
        if r.valid and r.format == zxingcpp.BarcodeFormat.QRCode
    ]
    if len(found) != 1:
        raise PictureRefused(
            "passport.picture_no_qr",
            f"expected one QR code in the picture, found {len(found)}",
            count=len(found),
        )
    return str(found[0].text)


def _too_many_pixels(detail: str) -> PictureRefused:
    return PictureRefused(
        "passport.picture_too_many_pixels",
        f"{detail}; at most {MAX_PICTURE_PIXELS // 1_000_000} megapixels are read",
        megapixels=MAX_PICTURE_PIXELS // 1_000_000,
    )


def _child() -> None:
    """Reads the picture on stdin, answers one JSON object on stdout."""
    try:
        import resource
    except ImportError:  # not on Linux/macOS: the wall-clock bound still holds
        pass
    else:
        seconds = int(DECODE_SECONDS) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    Image.MAX_IMAGE_PIXELS = MAX_PICTURE_PIXELS
    data = sys.stdin.buffer.read(MAX_PICTURE_BYTES + 1)
    try:
        answer: dict[str, Any] = {"text": decode(data)}
    except PictureRefused as refused:
        answer = {"key": refused.key, "detail": refused.detail, "values": refused.values}
    except MemoryError:
        answer = {"key": "passport.picture_damaged", "detail": "out of memory while decoding"}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    _child()

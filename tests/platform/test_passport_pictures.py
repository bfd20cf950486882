"""Pictures uploaded to the public verifier: only PNG/JPEG, never an external program, bounded.

The EPS tests put a fake ``gs`` first on PATH that writes a marker file when it runs: before the
fix the verifier handed an EPS upload to Pillow, which ran Ghostscript on the server.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, UnidentifiedImageError
from support.platform_client import csrf_token

from kyso.platform.passport import pictures, render, verifier

PAYLOAD = "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH-R6IOOK.IR9B+9D-8N5PT1EG%B0"

# The shape of the attack: a valid EPS whose program would pin a core in Ghostscript forever.
EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 64 64
%%EndComments
{ } loop
showpage
%%EOF
"""


@pytest.fixture
def fake_gs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``gs`` first on PATH that leaves a marker file when anything runs it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gs-ran"
    script = bin_dir / "gs"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return marker


def _qr_picture(format: str, mode: str = "L") -> bytes:
    picture = Image.open(io.BytesIO(render.qr_png(PAYLOAD, scale=6))).convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=format)
    return buffer.getvalue()


def _refusal(data: bytes) -> verifier.Check:
    check = verifier.verify_image(data, verifier.SignerList()).check("qr")
    assert check is not None
    assert not check.ok
    return check


def test_an_eps_upload_never_runs_ghostscript(fake_gs: Path) -> None:
    check = _refusal(EPS)
    assert check.problem == "passport.picture_not_png_jpeg"
    assert not fake_gs.exists(), "Ghostscript was run on an uploaded file"


def test_no_code_path_of_the_platform_opens_eps(fake_gs: Path) -> None:
    """Importing the platform's picture module unregisters Pillow's EPS plugin process-wide."""
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(EPS)).load()
    assert "EPS" not in Image.ID
    assert not fake_gs.exists()


def test_the_verify_page_refuses_eps_clearly_without_running_gs(
    app: Flask, client: FlaskClient, fake_gs: Path
) -> None:
    token = csrf_token(client, "/passports/verify")
    page = client.post(
        "/passports/verify",
        data={"csrf_token": token, "image": (io.BytesIO(EPS), "qr.png")},
        content_type="multipart/form-data",
    )
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Tệp này không phải ảnh PNG hoặc JPEG nên không được đọc" in text
    assert "KHÔNG HỢP LỆ" in text
    assert not fake_gs.exists()


@pytest.mark.parametrize(
    ("format", "mode"), [("GIF", "L"), ("TIFF", "L"), ("BMP", "L"), ("WEBP", "RGB")]
)
def test_pictures_other_than_png_and_jpeg_are_refused(format: str, mode: str) -> None:
    """Each holds a readable QR code: it is the format that is refused, not the content."""
    check = _refusal(_qr_picture(format, mode))
    assert check.problem == "passport.picture_not_png_jpeg"


def test_png_and_jpeg_are_read() -> None:
    for format, mode in (("PNG", "L"), ("JPEG", "L")):
        assert verifier.decode_qr_image(_qr_picture(format, mode)) == PAYLOAD


def test_a_truncated_png_is_told_as_damaged() -> None:
    whole = _qr_picture("PNG")
    check = _refusal(whole[: len(whole) // 2])
    assert check.problem == "passport.picture_damaged"


def test_a_png_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # 400 MP in a few dozen KB
    assert len(bomb.getvalue()) < 200_000
    check = _refusal(bomb.getvalue())
    assert check.problem == "passport.picture_too_many_pixels"
    assert check.values == {"megapixels": 16}


def test_a_file_over_the_size_limit_is_refused_not_cut() -> None:
    big = _qr_picture("PNG") + b"\0" * pictures.MAX_PICTURE_BYTES
    check = _refusal(big)
    assert check.problem == "passport.picture_too_large_file"


def test_decoding_has_a_wall_clock_bound() -> None:
    started = time.monotonic()
    with pytest.raises(pictures.PictureRefused) as refused:
        pictures.read_qr(_qr_picture("PNG"), timeout=0.01)
    assert refused.value.key == "passport.picture_too_slow"
    assert time.monotonic() - started < 2


def test_every_refusal_has_its_text_in_both_languages() -> None:
    from kyso.platform.i18n import translate

    for key, values in (
        ("passport.picture_not_png_jpeg", {}),
        ("passport.picture_damaged", {}),
        ("passport.picture_too_large_file", {"megabytes": 5}),
        ("passport.picture_too_many_pixels", {"megapixels": 16}),
        ("passport.picture_too_slow", {"seconds": "5"}),
        ("passport.picture_busy", {}),
        ("passport.picture_no_qr", {"count": 0}),
    ):
        for language in ("vi", "en"):
            assert "{" not in translate(key, language, **values)


def test_the_command_line_verifier_refuses_an_oversized_picture(app: Flask, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kyso.platform.passport.cli import dcc_group

    picture = tmp_path / "qr.png"
    picture.write_bytes(_qr_picture("PNG") + b"\0" * pictures.MAX_PICTURE_BYTES)
    result = CliRunner().invoke(dcc_group, ["verify", "--image", str(picture)], obj=app)
    assert result.exit_code == 1, result.output
    assert "FAIL The picture holds a readable QR code — The picture file is larger than 5 MB" in (
        result.output
    )


@pytest.mark.parametrize(
    "listed",
    [
        b'[{"kid": "AAAA"}]',
        b'{"certificates": [{"rawData": "not base64!"}]}',
        b"[1]",
        b"[" * 100_000,
    ],
)
def test_a_malformed_signer_list_is_told_clearly(app: Flask, tmp_path: Path, listed: bytes) -> None:
    from click.testing import CliRunner

    from kyso.platform.passport.cli import dcc_group

    with pytest.raises(ValueError, match="not a signer list"):
        verifier.SignerList.from_bytes(listed)
    path = tmp_path / "dsc.json"
    path.write_bytes(listed)
    result = CliRunner().invoke(dcc_group, ["verify", "--dsc", str(path), PAYLOAD], obj=app)
    assert result.exit_code == 1
    assert "Error: not a signer list" in result.output


def test_an_hc1_text_inflating_to_megabytes_is_refused_at_the_zlib_step() -> None:
    """8 KB of text (the limit) can hold 5 MB of zlib: it is not handed to cbor2."""
    import zlib

    import base45  # type: ignore[import-untyped]

    text = "HC1:" + base45.b45encode(zlib.compress(b"\0" * (5 << 20), 9)).decode()
    assert len(text) <= verifier.MAX_TEXT
    result = verifier.verify(text, verifier.SignerList())
    check = result.check("zlib")
    assert check is not None
    assert not check.ok
    assert "inflates to more than 65536 bytes" in check.detail
    truncated = "HC1:" + base45.b45encode(zlib.compress(b"x" * 100)[:-3]).decode()
    assert not verifier.verify(truncated, verifier.SignerList()).passed("zlib")


def test_a_picture_waits_for_a_free_decoder_then_is_told_to_try_again() -> None:
    taken = 0
    try:
        while pictures._slots.acquire(blocking=False):  # every decoder busy
            taken += 1
        assert taken == pictures.CONCURRENT_DECODES
        with pytest.raises(pictures.PictureRefused) as refused:
            pictures.read_qr(_qr_picture("PNG"), timeout=0.2)
        assert refused.value.key == "passport.picture_busy"
    finally:
        for _ in range(taken):
            pictures._slots.release()
    assert pictures.read_qr(_qr_picture("PNG")) == PAYLOAD

"""The PDF passport's page, built from parts prepared once per process.

fpdf2 parsed and subset the DejaVu fonts and laid the page out in pure Python for every
passport (about 150 ms of CPU each). Here the fonts are subset once, to the letters a
passport can hold (Latin, Latin-1, Latin Extended-A, the Vietnamese letters, punctuation),
and their PDF objects (the compressed font program, glyph widths, ToUnicode map) are kept;
a passport then costs its page's drawing operators (text set with the kept glyph widths),
its QR image (the module rows, 1 bit a module, scaled by the PDF viewer) and pyHanko's
writer, which the PAdES signature then signs directly, without serialising and parsing the
PDF again. A character outside the repertoire shows as the font's empty box.
"""

from __future__ import annotations

import functools
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fontTools import subset as ftsubset
from fontTools.ttLib import TTFont
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PdfFileWriter

__all__ = ["REPERTOIRE", "Page", "PageFont", "page_font"]

MM: Final = 72 / 25.4  # PDF points per millimetre
A4: Final = (210.0, 297.0)

# Every character a passport page may hold.
REPERTOIRE: Final = (
    *range(0x20, 0x7F),
    *range(0xA0, 0x180),  # Latin-1, Latin Extended-A (Ă ă Đ đ Ĩ ĩ Ũ ũ among them)
    *(0x1A0, 0x1A1, 0x1AF, 0x1B0),  # Ơ ơ Ư ư
    *range(0x1EA0, 0x1EFA),  # the Vietnamese letters with tone marks
    *(0x2010, 0x2013, 0x2014, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2026, 0x20AB),
)


@dataclass(frozen=True, eq=False)
class PageFont:
    """A subset font and what its PDF objects need, prepared once."""

    name: str  # with its subset tag
    program: bytes  # the TrueType subset, zlib-compressed
    program_length: int
    units: int  # units per em
    glyphs: dict[int, int]  # code point -> glyph id
    advances: tuple[int, ...]  # by glyph id, in font units
    bbox: tuple[int, int, int, int]
    ascent: int
    descent: int
    cap_height: int
    to_unicode: bytes  # the ToUnicode CMap, zlib-compressed
    widths: bytes  # the CIDFont's /W array, written once: [0 [w0 w1 ...]] in 1/1000 em

    def width(self, text: str, size: float) -> float:
        """The width of ``text`` at ``size`` points, in millimetres."""
        total = sum(self.advances[self.glyphs.get(ord(c), 0)] for c in text)
        return total * size / self.units / MM

    def encode(self, text: str) -> str:
        return "".join(f"{self.glyphs.get(ord(c), 0):04X}" for c in text)


@functools.lru_cache(maxsize=4)
def page_font(path: Path, tag: str) -> PageFont:
    font = TTFont(str(path), recalcTimestamp=False)
    options = ftsubset.Options(notdef_outline=True, recommended_glyphs=True)
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM", "hdmx", "MATH"]
    subsetter = ftsubset.Subsetter(options)
    subsetter.populate(unicodes=REPERTOIRE)
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    program = buffer.getvalue()
    font = TTFont(io.BytesIO(program))
    order = font.getGlyphOrder()
    ids = {name: i for i, name in enumerate(order)}
    glyphs = {code: ids[name] for code, name in font.getBestCmap().items()}
    metrics = font["hmtx"].metrics
    head, os2 = font["head"], font["OS/2"]
    scale = 1000 / head.unitsPerEm
    lines = [
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
        "1 begincodespacerange <0000> <FFFF> endcodespacerange",
    ]
    pairs = sorted((gid, code) for code, gid in glyphs.items())
    first: dict[int, int] = {}
    for gid, code in pairs:
        first.setdefault(gid, code)
    entries = sorted(first.items())
    for start in range(0, len(entries), 100):
        chunk = entries[start : start + 100]
        lines.append(f"{len(chunk)} beginbfchar")
        lines.extend(f"<{gid:04X}> <{code:04X}>" for gid, code in chunk)
        lines.append("endbfchar")
    lines += ["endcmap CMapName currentdict /CMap defineresource pop end end"]
    return PageFont(
        name=f"{tag}+{font['name'].getDebugName(6) or path.stem}",
        program=zlib.compress(program, 9),
        program_length=len(program),
        units=head.unitsPerEm,
        glyphs=glyphs,
        advances=tuple(metrics[name][0] for name in order),
        bbox=(
            round(head.xMin * scale),
            round(head.yMin * scale),
            round(head.xMax * scale),
            round(head.yMax * scale),
        ),
        ascent=round(os2.sTypoAscender * scale),
        descent=round(os2.sTypoDescender * scale),
        cap_height=round(getattr(os2, "sCapHeight", 700) * scale),
        to_unicode=zlib.compress("\n".join(lines).encode("ascii"), 9),
        widths=(
            "[0 [" + " ".join(str(round(metrics[name][0] * scale)) for name in order) + "]]"
        ).encode("ascii"),
    )


class _Written(generic.PdfObject):
    """A direct PDF object already written out: the same bytes in every passport (a font's
    ~900 glyph widths were ~900 number objects made and written again for each PDF)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        if handler is not None:
            raise ValueError("an encrypted PDF re-encodes its objects")
        stream.write(self.data)


def _font_objects(writer: PdfFileWriter, font: PageFont) -> generic.IndirectObject:
    n = generic.NameObject
    program = generic.StreamObject(
        {n("/Length1"): generic.NumberObject(font.program_length), n("/Filter"): n("/FlateDecode")},
        encoded_data=font.program,
    )
    descriptor = generic.DictionaryObject(
        {
            n("/Type"): n("/FontDescriptor"),
            n("/FontName"): n("/" + font.name),
            n("/Flags"): generic.NumberObject(32),
            n("/FontBBox"): generic.ArrayObject(generic.NumberObject(v) for v in font.bbox),
            n("/ItalicAngle"): generic.NumberObject(0),
            n("/Ascent"): generic.NumberObject(font.ascent),
            n("/Descent"): generic.NumberObject(font.descent),
            n("/CapHeight"): generic.NumberObject(font.cap_height),
            n("/StemV"): generic.NumberObject(80),
            n("/FontFile2"): writer.add_object(program),
        }
    )
    widths = _Written(font.widths)
    cid_font = generic.DictionaryObject(
        {
            n("/Type"): n("/Font"),
            n("/Subtype"): n("/CIDFontType2"),
            n("/BaseFont"): n("/" + font.name),
            n("/CIDSystemInfo"): generic.DictionaryObject(
                {
                    n("/Registry"): generic.pdf_string("Adobe"),
                    n("/Ordering"): generic.pdf_string("Identity"),
                    n("/Supplement"): generic.NumberObject(0),
                }
            ),
            n("/FontDescriptor"): writer.add_object(descriptor),
            n("/W"): widths,
            n("/CIDToGIDMap"): n("/Identity"),
        }
    )
    to_unicode = generic.StreamObject(
        {n("/Filter"): n("/FlateDecode")}, encoded_data=font.to_unicode
    )
    return writer.add_object(
        generic.DictionaryObject(
            {
                n("/Type"): n("/Font"),
                n("/Subtype"): n("/Type0"),
                n("/BaseFont"): n("/" + font.name),
                n("/Encoding"): n("/Identity-H"),
                n("/DescendantFonts"): generic.ArrayObject([writer.add_object(cid_font)]),
                n("/ToUnicode"): writer.add_object(to_unicode),
            }
        )
    )


@functools.lru_cache(maxsize=1024)
def _wrap(font: PageFont, size: float, room: float, text: str) -> tuple[str, ...]:
    """``text`` in lines no wider than ``room`` mm, broken at spaces (a longer word stays
    whole). Cached: the labels and notes are the same on every page."""
    space = font.width(" ", size)
    lines: list[str] = []
    current: list[str] = []
    used = 0.0
    for word in text.split(" "):
        width = font.width(word, size)
        if current and used + space + width > room:
            lines.append(" ".join(current))
            current, used = [], 0.0
        used += (space if current else 0.0) + width
        current.append(word)
    lines.append(" ".join(current))
    return tuple(lines)


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class Page:
    """One A4 page drawn in millimetres from the top left, as fpdf2 lays out cells: 10 mm
    margins, 1 mm of padding inside a cell, the text's baseline 0.3 x size below the middle."""

    MARGIN: Final = 10.0
    PADDING: Final = 1.0

    def __init__(self, fonts: dict[str, PageFont]) -> None:
        self.fonts = fonts
        self.keys = {style: f"F{i + 1}" for i, style in enumerate(fonts)}
        self.ops: list[str] = []
        self.y = self.MARGIN
        self.images: list[tuple[str, int, bytes]] = []
        self._font: tuple[str, float] = ("", 0.0)

    @property
    def width(self) -> float:
        return A4[0] - 2 * self.MARGIN

    def set_font(self, style: str, size: float) -> None:
        self._font = (style, size)

    def _text(self, x: float, top: float, height: float, text: str) -> None:
        style, size = self._font
        baseline = top + height / 2 + 0.3 * size / MM
        font = self.fonts[style]
        self.ops.append(
            f"BT /{self.keys[style]} {_number(size)} Tf {_number(x * MM)} "
            f"{_number((A4[1] - baseline) * MM)} Td <{font.encode(text)}> Tj ET"
        )

    def _lines(self, width: float, text: str) -> tuple[str, ...]:
        style, size = self._font
        return _wrap(self.fonts[style], size, width - 2 * self.PADDING, text)

    def cell(self, x: float, width: float, height: float, text: str, *, center: bool) -> None:
        style, size = self._font
        offset = self.PADDING
        if center:
            offset = (width - self.fonts[style].width(text, size)) / 2
        self._text(x + offset, self.y, height, text)

    def multi_cell(
        self, x: float, width: float, height: float, text: str, *, center: bool = False
    ) -> None:
        for line in self._lines(width, text):
            self.cell(x, width, height, line, center=center)
            self.y += height

    def line(self, x1: float, y: float, x2: float, grey: float) -> None:
        self.ops.append(
            f"{_number(grey)} G 0.57 w {_number(x1 * MM)} {_number((A4[1] - y) * MM)} m "
            f"{_number(x2 * MM)} {_number((A4[1] - y) * MM)} l S"
        )

    def image(self, x: float, y: float, size: float, modules: int, rows: bytes) -> None:
        """A square 1-bit image: ``rows`` packed 1 bit a module (1 = white)."""
        name = f"I{len(self.images) + 1}"
        self.images.append((name, modules, rows))
        self.ops.append(
            f"q {_number(size * MM)} 0 0 {_number(size * MM)} {_number(x * MM)} "
            f"{_number((A4[1] - y - size) * MM)} cm /{name} Do Q"
        )

    def writer(self, info: dict[str, str]) -> PdfFileWriter:
        """A pyHanko writer holding the page (and the document information ``info``)."""
        n = generic.NameObject
        writer = PdfFileWriter(
            info=generic.DictionaryObject(
                {n("/" + key): generic.TextStringObject(value) for key, value in info.items()}
            )
        )
        fonts = generic.DictionaryObject(
            {
                n("/" + self.keys[style]): _font_objects(writer, font)
                for style, font in self.fonts.items()
            }
        )
        images = generic.DictionaryObject()
        for name, modules, rows in self.images:
            images[n("/" + name)] = writer.add_object(
                generic.StreamObject(
                    {
                        n("/Type"): n("/XObject"),
                        n("/Subtype"): n("/Image"),
                        n("/Width"): generic.NumberObject(modules),
                        n("/Height"): generic.NumberObject(modules),
                        n("/ColorSpace"): n("/DeviceGray"),
                        n("/BitsPerComponent"): generic.NumberObject(1),
                        n("/Interpolate"): generic.BooleanObject(False),
                        n("/Filter"): n("/FlateDecode"),
                    },
                    encoded_data=zlib.compress(rows, 6),
                )
            )
        content = generic.StreamObject(
            {n("/Filter"): n("/FlateDecode")},
            encoded_data=zlib.compress("\n".join(["0 g", *self.ops]).encode("ascii"), 6),
        )
        page = generic.DictionaryObject(
            {
                n("/Type"): n("/Page"),
                n("/MediaBox"): generic.ArrayObject(
                    [
                        generic.FloatObject(v)
                        for v in (0, 0, round(A4[0] * MM, 2), round(A4[1] * MM, 2))
                    ]
                ),
                n("/Resources"): generic.DictionaryObject(
                    {n("/Font"): fonts, n("/XObject"): images}
                ),
                n("/Contents"): writer.add_object(content),
            }
        )
        writer.insert_page(page)
        return writer

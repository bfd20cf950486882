"""The QR codes' data mask: the one the ISO/IEC 18004 penalty rules choose, as segno (the
reference encoder) chooses it, and every symbol's PNG reads back (zxing-cpp).

libzint (zxing-cpp's writer) chose another mask than the rules give for about one payload in
five, and spent 1.4 ms on it; ``qrmask`` evaluates the 8 masks on the unmasked symbol.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import zxingcpp
from PIL import Image
from segno import encoder

from kyso.platform.passport import qrmask, render

BASE45: str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def _payloads(count: int, seed: int) -> list[str]:
    chosen = random.Random(seed)
    lengths = [chosen.randint(10, 900) for _ in range(count)]
    return ["HC1:" + "".join(chosen.choice(BASE45) for _ in range(n)) for n in lengths]


def _matrix(symbol: render.QrSymbol) -> np.ndarray:  # type: ignore[type-arg]
    size = symbol.size
    return np.frombuffer(symbol.modules, dtype=np.uint8).reshape(size, size) == 0


def _mask_of(matrix: np.ndarray) -> int:  # type: ignore[type-arg]
    """The data mask the symbol's format information names (its first copy)."""
    cells = [(8, c) for c in (0, 1, 2, 3, 4, 5, 7, 8)] + [(r, 8) for r in (7, 5, 4, 3, 2, 1, 0)]
    bits = 0
    for row, col in cells:
        bits = (bits << 1) | int(matrix[row, col])
    return ((bits ^ 0x5412) >> 10) & 7


def _reference_mask(matrix: np.ndarray) -> int:  # type: ignore[type-arg]
    """segno's choice for the codewords of this symbol: its function patterns and reserved
    areas, our data modules unmasked, then segno's own evaluation of the 8 masks."""
    size = matrix.shape[0]
    used = encoder.get_data_mask_functions(False)[_mask_of(matrix)]
    reference = encoder.make_matrix(size, size)
    encoder.add_finder_patterns(reference, size, size)
    encoder.add_alignment_patterns(reference, size, size)
    for i in range(size):
        for j in range(size):
            if reference[i][j] == 0x2:  # the encoding region
                reference[i][j] = int(matrix[i, j]) ^ int(bool(used(i, j)))
    mask, _ = encoder.find_and_apply_best_mask(reference, size, size)
    return int(mask)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_mask_is_the_one_the_penalty_rules_choose_and_zxing_reads_it(seed: int) -> None:
    same_symbol = 0
    payloads = _payloads(60, seed)
    for payload in payloads:
        symbol = render.qr_symbol(payload)
        matrix = _matrix(symbol)
        assert _mask_of(matrix) == _reference_mask(matrix), (payload, symbol.version)
        png = render.symbol_png(symbol)
        (read,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
        assert read.text == payload
        # Where segno encodes the same codewords its whole symbol is ours, mask included.
        theirs = encoder.encode(payload, error=symbol.error.lower(), boost_error=False)
        if theirs.version == symbol.version:
            same_symbol += bool((np.array(theirs.matrix, dtype=bool) == matrix).all())
    assert same_symbol >= len(payloads) * 3 // 4


def test_the_penalties_are_segnos() -> None:
    """Each mask's score (N1 + N2 + N3 + N4), not only the winner, on segno's own symbols."""
    for payload in _payloads(25, 3):
        code = encoder.encode(payload, error="m", boost_error=False)
        size = len(code.matrix)
        _data, information, patterns = qrmask._regions(size)
        plain = np.array(code.matrix, dtype=bool) ^ patterns[code.mask]
        plain[information] = False
        for mask in range(8):
            masked = plain ^ patterns[mask]
            rows = tuple(bytearray(r) for r in masked.astype(np.uint8))
            assert qrmask.penalty(masked) == sum(encoder.mask_scores(rows, size, size))

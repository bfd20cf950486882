"""The QR code's data mask chosen by the ISO/IEC 18004 penalty rules, vectorised with numpy.

zxing-cpp's writer (libzint) evaluates the 8 masks itself in about 1.4 ms for a passport's
version 18 symbol, most of a QR PNG's cost, and its choice is not always the one the
standard's rules give. Here the writer builds the symbol once with mask 0; numpy unmasks
the data region and applies the 8 masks (an 8 x n x n array), and each masked matrix's
rows and columns are laid out as one Python integer (4 light bits between lines), so each
rule is a handful of shifts, ands and bit counts over every line at once:

- N1: each run of 5 + i modules of one colour in a row or column scores 3 + i;
- N2: each 2 x 2 block of one colour scores 3;
- N3: each 1:1:3:1:1 (dark:light:dark:light:dark) pattern in a row or column with 4 light
  modules before or after it (the quiet zone counts as light) scores 40;
- N4: 10 for each full 5 % the share of dark modules is away from 50 %.

As in ISO/IEC 18004:2015 7.8.3 the format and version information are not in the evaluated
matrix (light). The lowest score wins, the lower mask number on a tie; an N3 pattern that
counted hides the patterns overlapping it, as a left-to-right search finds them (the
choices equal segno's, the reference encoder of the tests).
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
import numpy.typing as npt

Bits = npt.NDArray[np.bool_]
GAP: Final = 4  # light modules between lines: the quiet zone of the N3 rule


def _alignment_positions(version: int) -> list[int]:
    if version == 1:
        return []
    size = version * 4 + 17
    count = version // 7 + 2
    step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
    return sorted([size - 7 - i * step for i in range(count - 1)] + [6])


@functools.lru_cache(maxsize=64)
def _regions(size: int) -> tuple[Bits, Bits, Bits]:
    """For a symbol of ``size`` modules: the data region, the format and version information
    (with the dark module) and the 8 mask patterns (1 = flip) restricted to the data region."""
    version = (size - 17) // 4
    function = np.zeros((size, size), dtype=bool)
    function[:9, :9] = True  # finder, separator, format information
    function[:9, size - 8 :] = True
    function[size - 8 :, :9] = True
    function[6, :] = True  # timing patterns
    function[:, 6] = True
    positions = _alignment_positions(version)
    for row in positions:
        for col in positions:
            if (row == 6 and col in (6, positions[-1])) or (row == positions[-1] and col == 6):
                continue  # where a finder pattern is
            function[row - 2 : row + 3, col - 2 : col + 3] = True
    information = np.zeros((size, size), dtype=bool)
    information[8, :9] = information[:9, 8] = True
    information[8, size - 8 :] = information[size - 8 :, 8] = True
    information[6, 8] = information[8, 6] = False  # the timing patterns cross there
    if version >= 7:
        function[:6, size - 11 : size - 8] = function[size - 11 : size - 8, :6] = True
        information[:6, size - 11 : size - 8] = information[size - 11 : size - 8, :6] = True
    i, j = np.indices((size, size))
    patterns = np.stack(
        [
            (i + j) % 2 == 0,
            i % 2 == 0,
            j % 3 == 0,
            (i + j) % 3 == 0,
            (i // 2 + j // 3) % 2 == 0,
            (i * j) % 2 + (i * j) % 3 == 0,
            ((i * j) % 2 + (i * j) % 3) % 2 == 0,
            ((i + j) % 2 + (i * j) % 3) % 2 == 0,
        ]
    )
    data = ~function
    return data, information, (patterns & data).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _line_masks(size: int) -> tuple[int, int, int]:
    """Bit masks over ``_lines``'s layout: a module with a right neighbour in its line; a
    module of a row (the first ``size`` lines) with a right and a lower neighbour; all bits."""
    stride = size + GAP
    lines = 2 * size
    pairs = block = 0
    for line in range(lines):
        run = ((1 << (size - 1)) - 1) << (GAP + line * stride)
        pairs |= run
        if line < size - 1:
            block |= run
    return pairs, block, (1 << (GAP + lines * stride + 16)) - 1


def _lines(matrix: Bits) -> int:
    """The rows then the columns of ``matrix`` as one integer, bit ``GAP + line * (n + GAP) +
    position`` a module (1 = dark), ``GAP`` light bits before each line: one Python integer
    operation then works on every line at once."""
    size = int(matrix.shape[0])
    laid = np.zeros((2 * size, size + GAP), dtype=bool)
    laid[:size, :size] = matrix
    laid[size:, :size] = matrix.T
    return (
        int.from_bytes(np.packbits(laid.reshape(-1), bitorder="little").tobytes(), "little") << GAP
    )


def penalty(matrix: Bits) -> int:
    """The penalty score N1 + N2 + N3 + N4 of ``matrix`` (n x n, True = dark)."""
    size = int(matrix.shape[0])
    pairs, block, full = _line_masks(size)
    x = _lines(matrix)
    light = x ^ full
    equal = ~(x ^ (x >> 1)) & pairs  # bit k: modules k and k + 1 alike, in one line
    five = equal & (equal >> 1) & (equal >> 2) & (equal >> 3)
    n1 = five.bit_count() + 2 * (five & ~(equal << 1)).bit_count()
    stride = size + GAP
    below = ~(x ^ (x >> stride))
    n2 = 3 * (equal & (equal >> stride) & below & block).bit_count()
    pattern = x & (light >> 1) & (x >> 2) & (x >> 3) & (x >> 4) & (light >> 5) & (x >> 6)
    quiet = light & (light >> 1) & (light >> 2) & (light >> 3)  # bit k: k .. k + 3 light
    counted = pattern & ((quiet << 4) | (quiet >> 7))
    if counted & ((counted << 4) | (counted << 6)):
        n3 = _finder_like_in_order(pattern, counted)
    else:
        n3 = 40 * counted.bit_count()
    dark = x.bit_count() // 2
    n4 = 10 * int(abs(float(dark) / (size * size) * 100 - 50) / 5)
    return n1 + n2 + n3 + n4


def _finder_like_in_order(pattern: int, counted: int) -> int:
    """N3 when a counted 1:1:3:1:1 pattern overlaps another (4 or 6 modules on): as a search
    from the left finds them, a counted one hides the next 6 modules."""
    total, hidden_until = 0, -1
    while pattern:
        lowest = pattern & -pattern
        start = lowest.bit_length() - 1
        pattern ^= lowest
        if start < hidden_until:
            continue
        if counted & lowest:
            total += 40
            hidden_until = start + 7
    return total


def penalties(matrices: Bits) -> list[int]:
    """The penalty score of each matrix of ``matrices`` (masks, n, n), True = dark."""
    return [penalty(m) for m in matrices]


def best_mask(modules: bytes, size: int, mask: int) -> int:
    """The mask the penalty rules choose for the symbol ``modules`` (``size`` x ``size``, 0 =
    dark, as zxing-cpp's image has it) written with data mask ``mask``; the lower one on a
    tie."""
    matrix = np.frombuffer(modules, dtype=np.uint8).reshape(size, size) == 0
    _data, information, patterns = _regions(size)
    plain = matrix ^ patterns[mask]
    plain[information] = False
    scores = penalties(plain[np.newaxis, :, :] ^ patterns)
    return scores.index(min(scores))

"""Bar charts of the statistics page drawn on the server as inline SVG.

The platform's CSP forbids inline script and ``style`` attributes, so the charts are plain
SVG geometry (``x``, ``y``, ``width``, ``height`` are attributes, not CSS) coloured by classes
of the site's stylesheet; no JavaScript. Each bar's length is proportional to its count, the
longest bar filling ``BAR_MAX`` units of the view box. The table next to a chart and the
chart's ``aria-label`` carry the same numbers for screen readers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH = 360  # the view box; the SVG scales to its box (a 360-px phone as well as a desktop)
BAR_MAX = 290.0  # the longest bar; the rest of the row holds its count
ROW = 40  # one row: the label on its own line, the bar under it
BAR_HEIGHT = 16


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    text: str  # the count as the page writes numbers ("1.860" in Vietnamese)
    y: int  # top of the row in the view box
    length: float

    @property
    def bar_y(self) -> int:
        return self.y + 20

    @property
    def text_y(self) -> int:
        return self.y + 15

    @property
    def value_x(self) -> float:
        return round(self.length + 6, 2)

    @property
    def value_y(self) -> int:
        return self.bar_y + 13


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    bars: tuple[Bar, ...]

    @property
    def height(self) -> int:
        return ROW * len(self.bars) + 4

    @property
    def width(self) -> int:
        return WIDTH

    @property
    def bar_height(self) -> int:
        return BAR_HEIGHT

    @property
    def description(self) -> str:
        """What the chart shows, for the ``aria-label``: the title and every count."""
        return f"{self.title}: " + "; ".join(f"{bar.label}: {bar.text}" for bar in self.bars)


def bar_chart(
    key: str, title: str, items: Sequence[tuple[str, int]], number: Callable[[int], str]
) -> Chart:
    """A horizontal bar chart of ``items`` (label, count) in their order."""
    largest = max((value for _, value in items), default=0)
    bars = tuple(
        Bar(
            label=label,
            value=value,
            text=number(value),
            y=index * ROW,
            length=round(value / largest * BAR_MAX, 2) if largest else 0.0,
        )
        for index, (label, value) in enumerate(items)
    )
    return Chart(key, title, bars)

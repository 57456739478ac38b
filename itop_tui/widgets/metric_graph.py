"""A bar graph of one metric over a time window, and the bucketing behind it.

Samples are grouped into buckets of equal length aligned to the epoch (a
bucket of 5 s always spans :00-:05, :05-:10, ...), so a graph only moves
when a bucket fills, not on every sample; each column shows the highest
value of its bucket, so a short spike stays visible. Scales are fixed for
percentages (0-100) and a rounded-up maximum for rates and loads, so one
graph can be read against another.

Textual's ``Sparkline`` scales between the minimum and maximum of its data
(1 % and 2 % CPU then look like idle and saturated), colours every cell
differently (an escape sequence per cell, costly over slow links), and does
not know time (a gap in collection is drawn as if no time passed); hence
this widget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from itop_tui.domain.history import Series
from itop_tui.domain.thresholds import Threshold

BARS = "▁▂▃▄▅▆▇█"
"""Eighth blocks, from one eighth to a full cell."""

Unit = Literal["percent", "rate", "plain"]

AXIS_WIDTH = 6
"""Cells left of the bars for the scale labels (``100%``, ``1.2M``)."""


def bucket_values(
    series: Series,
    bucket: float,
    count: int,
    last_bucket: int,
    summary: Callable[[Sequence[float]], float] = max,
    span: float = 0.0,
) -> list[float | None]:
    """``count`` bucket values ending with bucket number ``last_bucket``.

    Bucket ``n`` covers ``[n * bucket, (n + 1) * bucket)``. A sample taken at
    ``t`` describes the ``span`` seconds before it (the collection interval:
    CPU % and rates are averages over it), so it counts in every bucket that
    stretch touches; with buckets shorter than the interval that leaves no
    holes between samples. ``None`` marks a bucket without any value.
    """
    if count <= 0 or bucket <= 0:
        return []
    first = last_bucket - count + 1
    groups: list[list[float]] = [[] for _ in range(count)]
    for time, value in zip(series.times, series.values, strict=True):
        if value is None or not math.isfinite(value):
            continue
        if span > 0:
            # The stretch (time - span, time]: the buckets that start before its
            # end and end after its start.
            newest = math.ceil(time / bucket) - 1
            oldest = math.floor((time - span) / bucket)
        else:
            newest = oldest = math.floor(time / bucket)
        for number in range(max(oldest, first), min(newest, last_bucket) + 1):
            groups[number - first].append(value)
    return [summary(group) if group else None for group in groups]


def nice_ceiling(value: float, floor: float = 1.0) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    value = max(value, floor)
    power = 10 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def format_rate(value: float | None) -> str:
    """Bytes per second as a short size: ``512B``, ``1.2K``, ``34M`` (binary units)."""
    if value is None or not math.isfinite(value):
        return "-"
    scaled = max(0.0, value)
    for unit in ("B", "K", "M", "G", "T"):
        if scaled < 1000 or unit == "T":
            if unit == "B" or scaled >= 10:
                return f"{scaled:.0f}{unit}"
            return f"{scaled:.1f}{unit}"
        scaled /= 1024
    return "-"  # pragma: no cover - the loop always returns


def format_value(value: float | None, unit: Unit) -> str:
    """A value as the graph's title shows it."""
    if value is None:
        return "-"
    if unit == "percent":
        return f"{value:.0f}%"
    if unit == "rate":
        return format_rate(value)
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def bar_cell(value: float | None, scale: float, row: int, rows: int) -> str:
    """The character of one column at ``row`` (0 is the top row) of a ``rows``-high graph."""
    if value is None or scale <= 0:
        return " "
    eighths = round(min(1.0, max(0.0, value / scale)) * rows * 8)
    if value > 0 and eighths == 0:
        eighths = 1  # something happened: show it
    level = rows - 1 - row
    filled = eighths - level * 8
    if filled <= 0:
        return " "
    return BARS[min(8, filled) - 1]


@dataclass(frozen=True)
class GraphData:
    """What a graph shows: the window's series and where the window ends."""

    series: Series
    window: float
    end: float | None
    span: float = 0.0


class MetricGraph(Widget):
    """A title line and bars of one metric over a time window.

    Give it data with :meth:`show`; it repaints only when what it would
    draw changed. With a threshold, bars at or over its warning or critical
    limit take the warning or critical colour.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "metric-graph--title",
        "metric-graph--bar",
        "metric-graph--warning",
        "metric-graph--critical",
        "metric-graph--axis",
    }
    """
    | Class | Description |
    | :- | :- |
    | `metric-graph--title` | The title line. |
    | `metric-graph--bar` | Bars below the thresholds. |
    | `metric-graph--warning` | Bars at or over the warning limit. |
    | `metric-graph--critical` | Bars at or over the critical limit. |
    | `metric-graph--axis` | The scale labels. |
    """

    DEFAULT_CSS = """
    MetricGraph {
        height: 4;
        & > .metric-graph--title { text-style: bold; }
        & > .metric-graph--bar { color: $primary; }
        & > .metric-graph--warning { color: $warning; }
        & > .metric-graph--critical { color: $error; }
        & > .metric-graph--axis { color: $text-muted; }
    }
    """

    def __init__(
        self,
        title: str,
        unit: Unit = "percent",
        *,
        threshold: Threshold | None = None,
        floor: float = 1.0,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """A graph titled ``title`` of values in ``unit``.

        ``floor`` is the smallest scale of a non-percent graph (so an idle
        link is not drawn at full height); the graph is as high as its CSS
        height, the first line being the title.
        """
        super().__init__(name=name, id=id, classes=classes)
        self.title = title
        self.unit: Unit = unit
        self.threshold = threshold
        self.floor = floor
        self._data: GraphData | None = None
        self._drawn: tuple[object, ...] | None = None
        self._stale = True
        self._lines: list[list[tuple[str, str]]] = []

    def show(
        self, series: Series, window: float, end: float | None = None, span: float = 0.0
    ) -> None:
        """Show ``series`` over the ``window`` seconds up to ``end`` (default: its last time).

        ``span`` is the collection interval: each value covers the stretch
        before its time (see :func:`bucket_values`).
        """
        if end is None and series.times:
            end = series.times[-1]
        self._data = GraphData(series, window, end, span)
        if self._layout_key() != self._drawn:
            self._stale = True
            self.refresh()

    @property
    def columns(self) -> int:
        """How many buckets fit beside the axis."""
        return max(1, self.size.width - AXIS_WIDTH)

    def bucket_seconds(self) -> float:
        """Seconds each column stands for."""
        data = self._data
        return (data.window if data else 60.0) / self.columns

    def column_values(self) -> list[float | None]:
        """The value of each column, oldest first."""
        data = self._data
        if data is None or data.end is None:
            return [None] * self.columns
        bucket = self.bucket_seconds()
        # With a span, the newest value ends the bucket that holds the instant before it.
        last = math.ceil(data.end / bucket) - 1 if data.span > 0 else math.floor(data.end / bucket)
        return bucket_values(data.series, bucket, self.columns, last, span=data.span)

    def _window_values(self) -> list[float]:
        data = self._data
        if data is None or data.end is None:
            return []
        start = data.end - data.window
        return [
            v
            for t, v in zip(data.series.times, data.series.values, strict=True)
            if v is not None and t > start and math.isfinite(v)
        ]

    def _scale(self, values: Sequence[float | None]) -> float:
        if self.unit == "percent":
            return 100.0
        highest = max((v for v in values if v is not None), default=0.0)
        highest = max(highest, self.floor)
        if self.unit != "rate":
            return nice_ceiling(highest, self.floor)
        # Rates are shown in binary units: round up within the unit shown.
        unit = 1.0
        while highest >= 1000 * unit:
            unit *= 1024
        return nice_ceiling(highest / unit, 1.0) * unit

    def title_text(self) -> str:
        """``CPU  now 45%  avg 20%  max 98%``: the latest value and the window's statistics."""
        values = self._window_values()
        data = self._data
        latest = None
        if data is not None and data.series.values:
            latest = data.series.values[-1]
        parts = [self.title, f"now {format_value(latest, self.unit)}"]
        if values:
            parts.append(f"avg {format_value(sum(values) / len(values), self.unit)}")
            parts.append(f"max {format_value(max(values), self.unit)}")
        return "  ".join(parts)

    def _severity(self, value: float | None) -> str:
        threshold = self.threshold
        if threshold is None or value is None:
            return "bar"
        if threshold.breaches(threshold.critical, value, False):
            return "critical"
        if threshold.breaches(threshold.warning, value, False):
            return "warning"
        return "bar"

    def _layout_key(self) -> tuple[object, ...]:
        values = self.column_values()
        return (self.size, self.title_text(), tuple(values))

    def _compute(self) -> None:
        """Turn the data into lines of (text, style name) runs."""
        rows = max(1, self.size.height - 1)
        values = self.column_values()
        scale = self._scale(values)
        severities = [self._severity(v) for v in values]
        top_label = format_value(scale, self.unit).rjust(AXIS_WIDTH - 1) + "│"
        bottom_label = "0".rjust(AXIS_WIDTH - 1) + "│"
        lines: list[list[tuple[str, str]]] = [[(self.title_text(), "title")]]
        for row in range(rows):
            label = top_label if row == 0 else bottom_label if row == rows - 1 else " " * (
                AXIS_WIDTH - 1
            ) + "│"
            runs: list[tuple[str, str]] = [(label, "axis")]
            for value, severity in zip(values, severities, strict=True):
                char = bar_cell(value, scale, row, rows)
                style = severity if char != " " else "bar"
                if runs and runs[-1][1] == style:
                    runs[-1] = (runs[-1][0] + char, style)
                else:
                    runs.append((char, style))
            lines.append(runs)
        self._lines = lines
        self._drawn = self._layout_key()

    def on_resize(self) -> None:
        """Columns depend on the width: recompute them."""
        self._stale = True

    def render_line(self, y: int) -> Strip:
        """Line ``y``: the title, then the rows of bars."""
        if self._stale or self._drawn is None or self._drawn[0] != self.size:
            self._compute()
            self._stale = False
        width = self.size.width
        base = self.rich_style
        if y >= len(self._lines):
            return Strip.blank(width, base)
        segments = [
            Segment(text, base + self._style(name)) for text, name in self._lines[y]
        ]
        strip = Strip(segments, sum(cell_len(text) for text, _ in self._lines[y]))
        return strip.crop_extend(0, width, base)

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"metric-graph--{name}")

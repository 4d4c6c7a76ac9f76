"""A small inline SVG chart of a connection's last day: records posted per hour (bars) and the
median time from Zuora's change to the ERP posting (a line). Drawn on the server, no script; the
figures are also in the chart's ``<title>``/``<desc>`` and in a table beside it for screen readers."""

from __future__ import annotations

from datetime import timedelta

from markupsafe import Markup, escape

from shared.metrics import format_lag
from worker.console.views import Chart

WIDTH, HEIGHT = 480, 140
LEFT, RIGHT, TOP, BOTTOM = 36, 40, 10, 22


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def throughput_svg(chart: Chart, *, label: str) -> Markup:
    """The chart as an ``<svg>`` element (role img, with a title and a description)."""
    hours = len(chart.posted)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_posted = max(chart.posted) if any(chart.posted) else 1
    lags = [v for v in chart.lag if v is not None]
    top_lag = (max(lags) if lags else 0.0) or 1.0  # all-zero lags: no division by zero
    slot = inner_w / hours
    parts: list[str] = []
    total = sum(chart.posted)
    worst = format_lag(max(lags)) if lags else "-"
    desc = f"{total} records posted in the last {hours} hours; the slowest hour's median lag was {worst}."
    parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t-{escape(label)} d-{escape(label)}">'
    )
    parts.append(f'<title id="t-{escape(label)}">Throughput and lag over the last day</title>')
    parts.append(f'<desc id="d-{escape(label)}">{escape(desc)}</desc>')
    base = TOP + inner_h
    parts.append(
        f'<line x1="{LEFT}" y1="{base}" x2="{LEFT + inner_w}" y2="{base}" stroke="#8a8f98" stroke-width="1"/>'
    )
    for index, count in enumerate(chart.posted):
        if not count:
            continue
        height = inner_h * count / top_posted
        x = LEFT + index * slot + 1
        hour = (chart.start + timedelta(hours=index)).strftime("%H:00")
        parts.append(
            f'<rect x="{_number(x)}" y="{_number(base - height)}" width="{_number(max(1.0, slot - 2))}" '
            f'height="{_number(height)}" fill="#4a78b5"><title>{hour}: {count} posted</title></rect>'
        )
    points = []
    for index, lag in enumerate(chart.lag):
        if lag is None:
            continue
        x = LEFT + index * slot + slot / 2
        y = base - inner_h * lag / top_lag
        points.append(f"{_number(x)},{_number(y)}")
    if len(points) > 1:
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#c0572b" stroke-width="2"/>')
    for point in points:
        cx, cy = point.split(",")
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#c0572b"/>')
    parts.append(f'<text x="{LEFT - 4}" y="{TOP + 9}" text-anchor="end" class="axis">{top_posted}</text>')
    parts.append(f'<text x="{LEFT - 4}" y="{base}" text-anchor="end" class="axis">0</text>')
    parts.append(
        f'<text x="{LEFT + inner_w + 4}" y="{TOP + 9}" class="axis lag">{escape(format_lag(top_lag) if lags else "")}</text>'
    )
    first = chart.start.strftime("%H:00")
    last = (chart.start + timedelta(hours=hours - 1)).strftime("%H:00")
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" class="axis">{first}</text>')
    parts.append(
        f'<text x="{LEFT + inner_w}" y="{HEIGHT - 6}" text-anchor="end" class="axis">{last} UTC</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is a number or escaped

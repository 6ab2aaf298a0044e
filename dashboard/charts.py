"""The limiter chart as inline SVG, drawn on the server (no script): creates per second as bars and the
creates in the trailing window as a line, against the limit (the envelope no window may cross)."""

from __future__ import annotations

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 720, 200, 28


def creates_chart(per_second: list[int], *, limit: int, window: float) -> Markup:
    n = max(1, len(per_second))
    w = int(round(window))
    trailing = [sum(per_second[max(0, i - w + 1): i + 1]) for i in range(n)]
    top = max([limit, *trailing, *per_second, 1])
    x = lambda i: PAD + (WIDTH - 2 * PAD) * i / n            # noqa: E731
    y = lambda v: HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top  # noqa: E731
    bar = (WIDTH - 2 * PAD) / n
    parts = [f'<svg class="chart" role="img" aria-label="creates per second, last {n} s" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
             f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"/>',
             f'<line class="envelope" x1="{PAD}" y1="{y(limit):.1f}" x2="{WIDTH - PAD}" y2="{y(limit):.1f}"/>',
             f'<text class="label" x="{WIDTH - PAD}" y="{y(limit) - 4:.1f}" text-anchor="end">limit: {limit} per '
             f'{window:g} s</text>']
    for i, v in enumerate(per_second):
        if v:
            parts.append(f'<rect class="bar" x="{x(i):.1f}" y="{y(v):.1f}" width="{max(bar, 1):.1f}" '
                         f'height="{HEIGHT - PAD - y(v):.1f}"/>')
    points = " ".join(f"{x(i) + bar / 2:.1f},{y(v):.1f}" for i, v in enumerate(trailing))
    parts.append(f'<polyline class="window" points="{points}"/>')
    parts.append(f'<text class="label" x="{PAD}" y="{HEIGHT - 8}">-{n} s</text>')
    parts.append(f'<text class="label" x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">now</text>')
    parts.append("</svg>")
    return Markup("".join(parts))

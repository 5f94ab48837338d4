"""Server-rendered SVG line charts: no JavaScript, no chart library, readable offline.

Labels are escaped here (the SVG is inserted into pages as markup), and every number is
formatted by Python, so a chart can never carry stored text into the page unescaped.
"""

from __future__ import annotations

from html import escape

from relaybox.console.queries import Series

WIDTH, HEIGHT, PAD = 360.0, 120.0, 4.0


def line_chart(
    series: list[Series], title: str, window: str, legend: list[str] | None = None
) -> str:
    """One chart of one or more series sharing a y axis (``None`` points leave gaps)."""
    values = [v for s in series for v in s.points if v is not None]
    top = max(values) if values else 0.0
    scale = (HEIGHT - 2 * PAD) / top if top > 0 else 0.0
    paths = []
    for number, s in enumerate(series):
        count = len(s.points)
        step = (WIDTH - 2 * PAD) / max(1, count - 1)
        commands: list[str] = []
        pen_up = True
        for index, value in enumerate(s.points):
            if value is None:
                pen_up = True
                continue
            x = PAD + index * step
            y = HEIGHT - PAD - value * scale
            commands.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
            pen_up = False
        paths.append(
            f'<path class="series s{number}" d="{" ".join(commands)}" fill="none"/>'
            if commands
            else ""
        )
    unit = escape(series[0].unit) if series else ""
    names = legend or [s.name for s in series]
    legend_text = " · ".join(
        f'<tspan class="s{n}">{escape(name)}</tspan>' for n, name in enumerate(names)
    )
    label = f"{escape(title)} ({unit}, last {escape(window)}), max {_fmt(top)}"
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH:.0f} {HEIGHT + 30:.0f}" role="img"'
        f' aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0" y="0" width="{WIDTH:.0f}" height="{HEIGHT:.0f}" class="frame"/>'
        f"{''.join(paths)}"
        f'<text x="{PAD}" y="{HEIGHT + 13:.0f}" class="label">{label}</text>'
        f'<text x="{PAD}" y="{HEIGHT + 26:.0f}" class="legend">{legend_text}</text>'
        "</svg>"
    )


def _fmt(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2f}"

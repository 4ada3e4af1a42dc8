"""A failed SVG snapshot prints what changed on the screen, as text, in the test's output.

pytest-textual-snapshot's HTML report stays on the machine that ran the tests; CI only shows the
output, so the screen's lines (expected and actual) are diffed here as well.
"""

from __future__ import annotations

import difflib
import html
import pickle
import re

import pytest
from pytest_textual_snapshot import node_to_report_path

TEXT = re.compile(r'<text class="([^"]*)" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>')


def screen_lines(svg: str | None) -> list[str]:
    """The SVG's text, row by row."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for _style, x, y, text in TEXT.findall(svg or ""):
        rows.setdefault(float(y), []).append((float(x), html.unescape(text)))
    return ["".join(t for _, t in sorted(rows[y])) for y in sorted(rows)]


@pytest.fixture
def snap_compare(snap_compare, request):
    def compare(*args, **kwargs) -> bool:
        result = snap_compare(*args, **kwargs)
        if not result:
            data = pickle.loads(node_to_report_path(request.node).read_bytes())
            expected, actual = data[1], data[2]
            diff = difflib.unified_diff(screen_lines(expected), screen_lines(actual), "snapshot", "now",
                                        lineterm="", n=1)
            lines = list(diff)
            print("the screen's text differs from the snapshot:\n" + "\n".join(lines) if lines else
                  "the screen's text is the snapshot's: colours, styles or layout differ (snapshot_report.html)")
        return result
    return compare

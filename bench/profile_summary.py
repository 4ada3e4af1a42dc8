"""Text summary of a py-spy ``--format raw`` profile (collapsed stacks): the top frames by own and total time.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 25] [--match backend/]

"Total" counts a frame once per sample it appears in (inclusive time), "own" only where it is the leaf.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``: lines merged, paths cut to the package."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "python3.11/", "python3.12/", "python3.13/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def summarise(lines: list[str], top: int, match: str) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [short(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    out = [f"{samples} samples"]
    for title, counter in (("own time (leaf frames)", own), (f"total time (frames matching {match!r})", total)):
        out.append(f"\ntop {top} by {title}:")
        rows = [(f, n) for f, n in counter.most_common() if title.startswith("own") or match in f]
        for f, n in rows[:top]:
            out.append(f"{n / max(1, samples) * 100:5.1f}%  {f}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="backend/")
    args = parser.parse_args()
    print(summarise(args.profile.read_text().splitlines(), args.top, args.match))
    return 0


if __name__ == "__main__":
    sys.exit(main())

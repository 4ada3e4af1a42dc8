"""``qaworker history [--json] [--slot N] [--result R] [--limit N] [--file PATH]``: the job history, no dashboard.

Reads the sqlite file the workers of this host write next to their pool (backend/history.py); it
needs no running worker. The file is found from the usual configuration (OPENQA_BASEDIR, …) unless
``--file`` names it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
from pathlib import Path

from backend.control.codec import encode
from backend.history import KEEP, HistoryEntry, HistoryStore, history_path
from widgets.format import human_duration

PROG = "qaworker history"


def history_parser() -> argparse.ArgumentParser:
    from app.cli import _add_config_options

    parser = argparse.ArgumentParser(prog=PROG, description="Print the jobs this host's workers finished.")
    parser.add_argument("--json", action="store_true", help="one JSON array (newest first)")
    parser.add_argument("--slot", type=int, metavar="N", help="only jobs of slot N")
    parser.add_argument("--result", metavar="R", help="only jobs with this result (passed, failed, …)")
    parser.add_argument("--limit", type=int, default=50, metavar="N", help=f"at most N jobs (default 50, max {KEEP})")
    parser.add_argument("--file", type=Path, metavar="PATH", help="the history file (default: next to the pool)")
    _add_config_options(parser)
    return parser


def _default_file(args: argparse.Namespace) -> Path:
    from app.cli import options_from
    from backend.config import load_config

    config = load_config(options_from(args))
    if not config.slots:
        return history_path(config.prjdir / "pool" / "1")
    return history_path(config.slots[0].pool_dir)


def format_line(entry: HistoryEntry) -> str:
    when = dt.datetime.fromtimestamp(entry.finished_at).strftime("%Y-%m-%d %H:%M:%S")
    duration = human_duration(entry.duration)
    reason = f"  ({entry.reason})" if entry.reason else ""
    return (f"{when}  slot {entry.instance:<4} #{entry.job_id:<8} {entry.result:<16} {duration:>8}  "
            f"{entry.name or '(not started)'}  {entry.url}{reason}")


def main(argv: list[str]) -> int:
    args = history_parser().parse_args(argv)
    path = args.file or _default_file(args)
    if not path.exists():
        print(f"{PROG}: no job history at {path} yet (it is written when a job finishes)", file=sys.stderr)
        return 1
    store = HistoryStore(path)
    try:
        store.open()
        entries = store.recent(max(1, min(args.limit, KEEP)), instance=args.slot, result=args.result)
    except sqlite3.Error as exc:
        print(f"{PROG}: {path}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    if args.json:
        print(json.dumps([encode(e) for e in entries], indent=1))
    else:
        for entry in entries:
            print(format_line(entry))
        if not entries:
            print("no jobs", file=sys.stderr)
    return 0

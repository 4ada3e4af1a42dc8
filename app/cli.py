"""The ``qaworker`` command line (PROTOCOL.md §2.5 plus our own sub-commands).

    qaworker [run] [options]          run the worker (the options of the Perl worker + ours)
    qaworker check-config [options]   print the effective settings per slot (secrets masked) and where
                                      each value came from; warn about keys qaworker does not know
    qaworker demo [--no-ui] [--slots N] [--duration S]
    qaworker mockweb --port N [--data-dir D]
    qaworker attach [--socket PATH] [--read-only] [--list]   the dashboard of a running worker
    qaworker history [--json] [--slot N] [--result R]        the jobs this host's workers finished

A configuration error is one line ``qaworker: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from backend import __version__
from backend.config import CliOptions, ConfigError, WorkerConfig, format_masked, load_config, masked

PROG = "qaworker"
COMMANDS = ("run", "check-config", "demo", "mockweb", "attach", "history")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``check-config``: everything that changes the configuration."""
    add = parser.add_argument
    add("--host", help="web UI host(s), space separated; overrides HOST")
    add("--apikey", help="API key; overrides OPENQA_API_KEY and client.conf")
    add("--apisecret", help="API secret; overrides OPENQA_API_SECRET and client.conf")
    add("--instance", type=int, metavar="N", help="slot number (default 1)")
    add("--instances", metavar="SPEC", help="several slots in one process, e.g. 1-4 or 1,3")
    add("--isotovideo", metavar="PATH", help="isotovideo to run (default /usr/bin/isotovideo)")
    add("--no-cleanup", action="store_true", help="do not clean the pool directory")
    add("--verbose", "-v", "--debug", "-d", action="store_true", dest="verbose", help="LOG_LEVEL=debug")
    add("--config-dir", type=Path, metavar="DIR",
        help="read workers.ini/client.conf (+ drop-ins) only from DIR")
    add("--log-format", choices=("text", "json"), default="text",
        help="log lines as text ([time] [level] message; priority prefixes under systemd) or json (one object "
             "per line, with instance/job_id/host fields); default text")
    add("--metrics-port", type=int, metavar="N", help="serve Prometheus metrics on this port")
    add("--metrics-address", default="127.0.0.1", metavar="ADDR", help="metrics bind address")


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="An openQA worker on asyncio with a live dashboard.",
        epilog="other commands: check-config, demo, mockweb, attach, history (see 'qaworker COMMAND --help')")
    _add_config_options(parser)
    parser.add_argument("--no-ui", action="store_true", help="headless: log lines instead of the dashboard")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def check_config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} check-config",
        description="Print the effective settings per slot (secrets masked) with where each value came "
        "from, warn (stderr) about keys qaworker does not act on, and exit; exit 2 on errors.")
    _add_config_options(parser)
    return parser


def demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} demo",
                                     description="Run the worker against a built-in mock web UI.")
    parser.add_argument("--no-ui", action="store_true")
    parser.add_argument("--slots", type=int, default=None, metavar="N")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    return parser


def mockweb_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} mockweb", description="Serve the mock openQA web UI.")
    parser.add_argument("--port", type=int, required=True, metavar="N")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="D",
                        help="default: a new temporary directory, removed again on exit")
    parser.add_argument("--flavour", choices=("new", "2023"), default="new", help="web UI version to mimic")
    parser.add_argument("--no-auth", action="store_true", help="accept unsigned requests")
    return parser


def options_from(args: argparse.Namespace) -> CliOptions:
    return CliOptions.parse(
        host=args.host, apikey=args.apikey, apisecret=args.apisecret, instance=args.instance,
        instances=args.instances, isotovideo=args.isotovideo, no_cleanup=args.no_cleanup,
        verbose=args.verbose, config_dir=args.config_dir, log_format=args.log_format,
        metrics_port=args.metrics_port, metrics_address=args.metrics_address)


def cmd_run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    options = options_from(args)
    config = load_config(options)
    from app.run import run_worker  # lazily: the parser must work without the runtime
    from app.startup import system_config_notice

    notice = system_config_notice(config, options)
    if notice:
        config.warnings.insert(0, notice)  # logged first thing when the log is up

    return run_worker(config, no_ui=args.no_ui, log_format=config.log_format,
                      metrics_port=config.metrics_port, metrics_address=config.metrics_address)


def cmd_check_config(argv: list[str]) -> int:
    """The effective configuration on stdout; one warning line per key qaworker does not act on on
    stderr (still rc 0: upstream passes such keys into the jobs' settings, so they may be meant)."""
    args = check_config_parser().parse_args(argv)
    config: WorkerConfig = load_config(options_from(args))
    print(format_masked(masked(config)))
    for warning in config.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 0


def cmd_demo(argv: list[str]) -> int:
    args = demo_parser().parse_args(argv)
    from app.demo import main as demo_main

    return demo_main(args)


def cmd_mockweb(argv: list[str]) -> int:
    args = mockweb_parser().parse_args(argv)
    from backend.mockweb.server import serve_forever

    own_dir = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="qaworker-mockweb-")) if own_dir else args.data_dir

    def ready(ui: Any) -> None:
        print(f"mock web UI at {ui.url}  data dir {ui.data_dir}{' (removed on exit)' if own_dir else ''}", flush=True)
        print(f"api key {ui.api_key}  api secret {ui.api_secret}", flush=True)

    async def serve() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: the web UI's stop, then our cleanup
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_forever(args.port, data_dir, flavour=args.flavour, require_auth=not args.no_auth,
                                ready=ready)

    try:
        asyncio.run(serve())
    finally:
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def cmd_attach(argv: list[str]) -> int:
    from app.attach import main as attach_main

    return attach_main(argv)


def cmd_history(argv: list[str]) -> int:
    from app.history_cli import main as history_main

    return history_main(argv)


HANDLERS = {"run": cmd_run, "check-config": cmd_check_config, "demo": cmd_demo, "mockweb": cmd_mockweb,
            "attach": cmd_attach, "history": cmd_history}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # a plain "qaworker --host ..." runs the worker, like the Perl script
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    try:
        return HANDLERS[command](argv)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())

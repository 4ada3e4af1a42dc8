"""The environment the Perl worker gives isotovideo (upstream ``script/worker``): os-autoinst's own Mojo
clients (asset/needle downloads, the command server's clients) otherwise run with Mojo's 30 s / 10 s
defaults and give up on a busy web UI. An admin's own value (the worker's environment) wins."""

from __future__ import annotations

from collections.abc import Mapping

MOJO_DEFAULTS: dict[str, str] = {
    "MOJO_INACTIVITY_TIMEOUT": "300",
    "MOJO_CONNECT_TIMEOUT": "300",
    "MOJO_REACTOR": "Mojo::Reactor::Poll",
}


def mojo_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``MOJO_DEFAULTS`` the admin did not set (an empty value counts as set)."""
    return {key: value for key, value in MOJO_DEFAULTS.items() if key not in environ}

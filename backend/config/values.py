"""The one parser for the values qaworker interprets (numbers, whole numbers, booleans).

Every setting that qaworker reads as a number goes through :func:`parse_number` - at load time
strictly (a bad value is a ``ConfigError`` naming where it came from), and for job settings from the
web UI leniently via :func:`number_or` (a bad value means "use the default", as the Perl worker does).
"""

from __future__ import annotations

import math
import re

# Perl's looks_like_number, minus hex/inf/nan and Python's "1_000"
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER_RE = re.compile(r"[+-]?\d+")

_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})


def parse_number(text: str, *, integer: bool = False, minimum: float = 0, above: bool = False) -> float:
    """``text`` as a finite number ``>= minimum`` (``> minimum`` with ``above``); ``ValueError`` with the
    reason otherwise. With ``integer`` only whole numbers are accepted (and an ``int`` is returned)."""
    value = text.strip()
    if integer:
        if not _INTEGER_RE.fullmatch(value):
            raise ValueError("expected a whole number")
        number: float = int(value)
    else:
        if not _NUMBER_RE.fullmatch(value) or not math.isfinite(float(value)):
            raise ValueError("expected a number")
        number = float(value)
    if number < minimum or (above and number == minimum):
        kind = "whole number" if integer else "number"
        if minimum == 0:
            raise ValueError(f"expected a {'positive' if above else 'non-negative'} {kind}")
        raise ValueError(f"expected a {kind} {'above' if above else 'of at least'} {minimum:g}")
    return number


def parse_bool(text: str) -> bool:
    """1/0, yes/no, true/false, on/off; any other whole number counts by being non-zero (as in Perl,
    so a config the Perl worker takes still loads). Other words are an error - Perl would take
    "no" as true, which nobody means."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if _INTEGER_RE.fullmatch(value):
        return int(value) != 0
    raise ValueError("expected a boolean (1/0, yes/no, true/false, on/off)")


def number_or(value: object, default: float | None, *, integer: bool = False, minimum: float = 0,
              above: bool = False) -> float | None:
    """Lenient form for values nobody validated (job settings): unset or bad → ``default``."""
    if value is None or str(value).strip() == "":
        return default
    try:
        return parse_number(str(value), integer=integer, minimum=minimum, above=above)
    except ValueError:
        return default


def bool_or(value: object, default: bool) -> bool:
    """Lenient boolean: unset → ``default``; anything not clearly false counts as true (like Perl)."""
    if value is None or str(value).strip() == "":
        return default
    try:
        return parse_bool(str(value))
    except ValueError:
        return True

"""§10.2 step 9: ``%KEY%`` placeholders in the job variables."""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

_PLACEHOLDER_RE = re.compile(r"(%+)(\w+)(%+)")


# --- step 9: placeholders ------------------------------------------------------------------------------


def expand_placeholders(values: dict) -> str | None:
    """Expand %KEY% in all string values in place; returns an error text (only to be logged) or None.

    Worker-side rules: unknown keys become empty, %CASEDIR% is kept (step 12 handles it), a key wrapped
    in more than one % on a side loses one level (%%KEY%% -> %KEY%), circular references are an error.
    """
    original = dict(values)  # expand against the unexpanded values so the result is order-independent
    error = None
    for key, value in original.items():
        if isinstance(value, str) and "%" in value:
            try:
                values[key] = _PLACEHOLDER_RE.sub(lambda m: _expand_one(original, m, frozenset()), value)
            except _CircularError as exc:
                error = f"Error: {exc}"
    return error


class _CircularError(Exception):
    pass


def _expand_one(values: dict, match: re.Match[str], visited: frozenset[str]) -> str:
    start, key, end = match.group(1), match.group(2), match.group(3)
    if key == "CASEDIR":
        return match.group(0)
    if start != "%" or end != "%":
        return start[1:] + key + end[:-1]
    value = values.get(key)
    if value is None:
        return ""
    if key in visited:
        raise _CircularError(f"The key {key} contains a circular reference, its value is {value}.")
    branch = visited | {key}
    return _PLACEHOLDER_RE.sub(lambda m: _expand_one(values, m, branch), str(value))



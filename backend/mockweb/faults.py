"""Fault injection for the mock web UI: errors, delays and connection resets per path regex.

Rules are checked in the order they were added for every HTTP request before it is handled. A
``delay`` rule sleeps and lets the following rules (and the handler) run; ``fail`` and ``reset``
end the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FaultRule:
    pattern: re.Pattern[str]
    kind: str  # fail, fail_every, delay, reset
    status: int = 500
    times: int | None = 1  # remaining applications; None = unlimited
    every: int = 0
    seen: int = 0  # matching requests so far (fail_every)
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass
class FaultAction:
    """What the middleware must do for one request."""

    delay: float = 0.0
    reset: bool = False
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class FaultInjector:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.applied: int = 0  # how many faults were injected (for assertions)

    def fail(self, path_regex: str, status: int, times: int = 1, retry_after: float | None = None,
             body: dict[str, Any] | None = None) -> None:
        self.rules.append(FaultRule(re.compile(path_regex), "fail", status=status, times=times,
                                    retry_after=retry_after, body=body))

    def fail_every(self, path_regex: str, n: int, status: int) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        self.rules.append(FaultRule(re.compile(path_regex), "fail_every", status=status, times=None, every=n))

    def delay(self, path_regex: str, seconds: float, times: int | None = 1) -> None:
        self.rules.append(FaultRule(re.compile(path_regex), "delay", times=times, seconds=seconds))

    def reset(self, path_regex: str, times: int = 1) -> None:
        self.rules.append(FaultRule(re.compile(path_regex), "reset", times=times))

    def clear(self) -> None:
        self.rules.clear()

    def action_for(self, path: str) -> FaultAction | None:
        """Consume the rules matching ``path`` and say what to do (None: handle normally)."""
        action = FaultAction()
        touched = False
        for rule in list(self.rules):
            if not rule.pattern.search(path) or rule.times == 0:
                continue
            if rule.kind == "fail_every":
                rule.seen += 1
                if rule.seen % rule.every:
                    continue
            elif rule.times is not None:
                rule.times -= 1
            touched = True
            self.applied += 1
            if rule.kind == "delay":
                action.delay += rule.seconds
                continue
            if rule.kind == "reset":
                action.reset = True
            else:
                action.status = rule.status
                action.body = rule.body if rule.body is not None else {
                    "error": f"injected failure {rule.status}"}
                if rule.retry_after is not None:
                    action.headers["Retry-After"] = f"{rule.retry_after:g}"
            break
        self.rules = [r for r in self.rules if r.times != 0]
        return action if touched else None

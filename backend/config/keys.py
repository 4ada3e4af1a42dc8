"""What a setting is: its name, where it is read, its kind, default and meaning.

Typed settings are declared as fields of the tuning dataclasses (``tunable(...)``, see tuning.py);
the settings qaworker knows but keeps as strings (``HOST``, ``WORKER_CLASS``, ...) and the upstream
ones it does not support are listed in registry.py. Both feed the unknown-key warnings of
``check-config`` and the README's configuration table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backend.config.values import parse_bool, parse_number

# number: >= 0; positive: > 0; integer: whole >= 0; count: whole >= 1; bool; text (empty = unset); path;
# choice: one of ``choices`` (case-insensitive)
Kind = Literal["number", "positive", "integer", "count", "bool", "text", "path", "choice"]
# slot: workers.ini ([global], instance and class sections); host: a [<host>] section; env: only the
# environment; job: a job setting the worker interprets (from workers.ini it lands in vars.json too)
Where = Literal["slot", "host", "env", "job", "cli"]

ISSUE_12 = "parsed; behaviour: see issue 12"


@dataclass(frozen=True)
class Setting:
    name: str  # the workers.ini key, or the variable of an environment-only setting
    meaning: str
    kind: Kind = "text"
    default: Any = None  # the typed default; None = unset
    where: Where = "slot"
    env: str | None = None  # environment variable that also sets it
    env_wins: bool = True  # the variable beats workers.ini (else workers.ini beats the variable)
    status: str = ""  # "" = does what upstream does; else what is missing (shown in the README)
    shown_default: str | None = None  # the default as the README shows it, when not the value itself
    attr: str | None = None  # attribute of SlotTuning / WorkerTuning holding the typed value
    prefix: bool = False  # ``name`` is a prefix (EXTERNAL_VIDEO_ENCODER*)
    choices: tuple[str, ...] = ()  # the values of a "choice" setting

    @property
    def in_workers_ini(self) -> bool:
        return self.where != "env"

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "1" if self.default else "0"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        return str(self.default)

    def convert(self, raw: str) -> Any:
        """The typed value of a non-empty ``raw`` string; ``ValueError`` with the reason."""
        if self.kind == "number":
            return parse_number(raw)
        if self.kind == "positive":
            return parse_number(raw, above=True)
        if self.kind == "integer":
            return int(parse_number(raw, integer=True))
        if self.kind == "count":
            return int(parse_number(raw, integer=True, minimum=1))
        if self.kind == "bool":
            return parse_bool(raw)
        if self.kind == "path":
            return Path(raw.strip())
        if self.kind == "choice":
            value = raw.strip().lower()
            if value not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}")
            return value
        return raw.strip()


def tunable(default: Any, name: str, kind: Kind, meaning: str, **options: Any) -> Any:
    """A typed field of a tuning dataclass, described by its ``Setting``."""
    setting = Setting(name=name, meaning=meaning, kind=kind, default=default, **options)
    return dataclasses.field(default=default, metadata={"setting": setting})


def field_settings(cls: type) -> list[Setting]:
    """The settings behind the fields of a tuning dataclass (with ``attr`` filled in)."""
    return [dataclasses.replace(f.metadata["setting"], attr=f.name) for f in dataclasses.fields(cls)]

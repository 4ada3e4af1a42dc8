"""qaworker's own process environment (``QAWORKER_*`` variables that are not workers.ini settings), typed
once by pydantic-settings: a bad value is a clear start-up error naming the variable, not a silent default
somewhere below.

The workers.ini settings that may also come from the environment (``QAWORKER_CGROUP``, ``OPENQA_WORKER_*``,
...) are not here: the settings registry (backend/config/tuning.py) resolves those with their origin.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.config.errors import ConfigError

PREFIX = "QAWORKER_"


class QaworkerEnvironment(BaseSettings):
    """The variables, each read as ``QAWORKER_<FIELD NAME>``; unset or empty means "not given"."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True, env_ignore_empty=True)

    control_socket: Path | None = None  # the control socket's exact path (else the runtime directories)
    control_group: str | None = None  # the group given to the control socket: its members may watch
    # colon-separated; replaces /etc/openqa:/usr/etc/openqa
    system_config_dirs: Annotated[tuple[Path, ...] | None, NoDecode] = None
    slow_callback_ms: float | None = Field(None, ge=0)  # log loop callbacks slower than this (0 = off)
    demo_first_instance: int | None = Field(None, ge=1)  # where the demo starts looking for free slot numbers

    @field_validator("system_config_dirs", mode="before")
    @classmethod
    def _colon_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(":") if p) or None
        return value

    @property
    def slow_callback_seconds(self) -> float | None:
        """The slow-callback threshold in seconds, or None when unset or 0."""
        return self.slow_callback_ms / 1000 if self.slow_callback_ms else None


class _Given(QaworkerEnvironment):
    """The same model over a given mapping only (tests, and callers that pass their environment)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_others):
        return (init_settings,)


def variable(field: str) -> str:
    return PREFIX + field.upper()


def read_environment(env: Mapping[str, str] | None = None) -> QaworkerEnvironment:
    """The process's (``env=None``: pydantic-settings reads ``os.environ``) or the given mapping's variables.

    Raises ``ConfigError`` naming the variable and what is wrong with its value.
    """
    try:
        if env is None:
            return QaworkerEnvironment()
        given = {name: env[variable(name)] for name in QaworkerEnvironment.model_fields
                 if env.get(variable(name), "").strip()}
        return _Given(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = variable(str(first["loc"][0])) if first.get("loc") else PREFIX + "*"
        raise ConfigError(f"environment {name}={first.get('input')!r}: {first['msg']}") from None

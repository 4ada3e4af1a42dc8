"""Pydantic models of every websocket message the web UI sends (PROTOCOL.md §6.3).

``parse_message`` never raises: a malformed or unknown message becomes ``Invalid`` with a reason,
which the connection logs and drops.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class _Msg(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class JobInfo(BaseModel):
    """A job object as sent in grab_job / grab_jobs (extra keys kept for job.json)."""

    model_config = ConfigDict(extra="allow")

    id: int
    settings: dict[str, Any]
    name: str = ""

    @field_validator("settings")
    @classmethod
    def _settings_are_scalars(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not isinstance(key, str) or "\0" in key:
                raise ValueError("setting names must be strings without NUL bytes")
            if isinstance(item, dict | list):
                raise ValueError(f"setting {key} is not a scalar")
        return value

    @property
    def settings_str(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in self.settings.items()}


JobId = int | Literal[""]


def _coerce_jobid(value: Any) -> Any:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


class GrabJob(_Msg):
    type: Literal["grab_job"]
    job: dict[str, Any]


class GrabJobsInfo(BaseModel):
    """``job_info`` of grab_jobs (§8.3): the jobs by id and their execution sequence.

    ``sequence`` is kept loose: a missing or malformed one is rejected with the protocol's reason
    (``job info lacks execution sequence``) by the slot, not dropped as an invalid message.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    ids: list[Any] = Field(default_factory=list)
    data: dict[str, Any]
    sequence: Any = None
    assigned_worker_id: int | None = None


class GrabJobs(_Msg):
    type: Literal["grab_jobs"]
    job_info: GrabJobsInfo


class StopCommand(_Msg):
    type: Literal["cancel", "abort", "obsolete", "quit"]
    jobid: JobId = ""

    _c = field_validator("jobid", mode="before")(_coerce_jobid)


class LiveCommand(_Msg):
    type: Literal["livelog_start", "livelog_stop", "developer_session_start"]
    jobid: JobId = ""

    _c = field_validator("jobid", mode="before")(_coerce_jobid)


class Info(_Msg):
    type: Literal["info"]
    seen: Any = None
    population: Any = None


class Incompatible(_Msg):
    type: Literal["incompatible"]


WebUIMessage = Annotated[GrabJob | GrabJobs | StopCommand | LiveCommand | Info | Incompatible,
                         Field(discriminator="type")]
_adapter: TypeAdapter[Any] = TypeAdapter(WebUIMessage)


class Invalid(BaseModel):
    """A message we could not use; ``reason`` says why (for the log)."""

    type: str = ""
    reason: str
    ignore_quietly: bool = False


def parse_message(raw: str | bytes) -> Any:
    """Parse one websocket frame into a message model, or ``Invalid``."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_MESSAGE_BYTES:
            return Invalid(reason=f"message of {len(raw)} bytes is too large")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Invalid(reason=f"not UTF-8: {exc}")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Invalid(reason=f"message of {len(raw)} characters is too large")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return Invalid(reason=f"not JSON: {str(exc)[:200]}")
    if not isinstance(data, dict):
        return Invalid(reason=f"not a JSON object but {type(data).__name__}")
    mtype = data.get("type")
    if "result" in data and mtype is None:
        return Invalid(reason="a response, ignored", ignore_quietly=True)
    if not isinstance(mtype, str):
        return Invalid(reason="message without a type")
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        known = mtype in {"grab_job", "grab_jobs", "cancel", "abort", "obsolete", "quit", "livelog_start",
                          "livelog_stop", "developer_session_start", "info", "incompatible"}
        reason = _short_errors(exc) if known else "unknown message type"
        return Invalid(type=mtype[:100], reason=reason)
    except RecursionError:
        return Invalid(type=mtype[:100], reason="message nested too deeply")


def _short_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"][1:] or err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_job(data: Any) -> JobInfo | str:
    """A job object or the reject reason ``the provided job is invalid``."""
    if not isinstance(data, dict):
        return "the provided job is invalid"
    try:
        return JobInfo.model_validate(data)
    except (ValidationError, RecursionError):
        return "the provided job is invalid"

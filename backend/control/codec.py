"""Dataclasses ↔ JSON-ready values, driven by the type hints: events and the read model on the wire.

Generic on purpose: a field added to an event or to ``WorkerView`` travels without touching this
module. Decoding ignores fields it does not know (a newer worker may send more) and leaves missing
ones at their defaults (an older one may send fewer). Dicts with non-string keys (``WorkerView.hosts``
is keyed by ``(host, instance)``) become lists of ``[key, value]`` pairs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections import deque
from enum import Enum
from functools import cache
from typing import Any

from backend import events as ev

JSON = Any


def encode(obj: Any) -> JSON:
    if obj is None or (isinstance(obj, bool | int | float) and not isinstance(obj, Enum)):
        return obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, str):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: encode(v) for k, v in obj.items()}
        return [[encode(k), encode(v)] for k, v in obj.items()]
    if isinstance(obj, list | tuple | deque | set | frozenset):
        return [encode(x) for x in obj]
    raise TypeError(f"cannot encode {type(obj).__name__}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(tp: Any, data: JSON) -> Any:
    """Build a value of type ``tp`` from what ``encode`` made (raises ValueError/TypeError on nonsense)."""
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(arg, data)
            except (TypeError, ValueError, KeyError) as exc:
                errors.append(exc)
        raise ValueError(f"no type of {tp} fits {data!r}: {errors}")
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], x) for x in _seq(data))
        return tuple(decode(a, x) for a, x in zip(args, _seq(data), strict=True))
    if origin in (list, deque, set, frozenset):
        item = args[0] if args else Any
        return origin(decode(item, x) for x in _seq(data))
    if origin is dict:
        key_t, value_t = args or (Any, Any)
        pairs = data if isinstance(data, list) else list(_mapping(data).items())
        return {decode(key_t, k): decode(value_t, v) for k, v in pairs}
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise TypeError(f"expected a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise TypeError(f"expected an integer, got {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise TypeError(f"expected a string, got {data!r}")
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise TypeError(f"expected true/false, got {data!r}")
        return data
    return data


def _seq(data: JSON) -> list:
    if not isinstance(data, list):
        raise TypeError(f"expected a list, got {type(data).__name__}")
    return data


def _mapping(data: JSON) -> dict:
    if not isinstance(data, dict):
        raise TypeError(f"expected an object, got {type(data).__name__}")
    return data


def _decode_dataclass(cls: type, data: JSON) -> Any:
    data = _mapping(data)
    hints = _hints(cls)
    init: dict[str, Any] = {}
    later: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = decode(hints[f.name], data[f.name])
        if isinstance(value, deque) and f.default_factory is not dataclasses.MISSING:
            bounded = f.default_factory()  # keep the field's maxlen (log tails, notices)
            if isinstance(bounded, deque):
                bounded.extend(value)
                value = bounded
        (init if f.init else later)[f.name] = value
    obj = cls(**init)
    for name, value in later.items():
        object.__setattr__(obj, name, value)
    return obj


@cache
def event_types() -> dict[str, type[ev.Event]]:
    """Every event class of backend.events by name (what travels in ``{"event": name}``)."""
    found: dict[str, type[ev.Event]] = {}
    for value in vars(ev).values():
        if isinstance(value, type) and issubclass(value, ev.Event) and value is not ev.Event:
            found[value.__name__] = value
    return found


def encode_event(event: ev.Event) -> dict[str, JSON]:
    return {"type": "event", "event": type(event).__name__, "data": encode(event)}


def decode_event(message: dict[str, JSON]) -> ev.Event | None:
    """The event of an ``event`` message; None for an event type this side does not know."""
    cls = event_types().get(str(message.get("event")))
    if cls is None:
        return None
    return decode(cls, message.get("data") or {})

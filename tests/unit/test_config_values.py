"""The one parser for numbers and booleans (backend/config/values.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.config import bool_or, number_or, parse_bool, parse_number


@pytest.mark.parametrize(("text", "kwargs", "expected"), [
    ("5", {}, 5.0), (" 2.5 ", {}, 2.5), (".5", {}, 0.5), ("1e3", {}, 1000.0), ("+3", {}, 3.0), ("0", {}, 0.0),
    ("10", {"integer": True}, 10), ("1", {"integer": True, "minimum": 1}, 1), ("0.1", {"above": True}, 0.1),
])
def test_accepted(text, kwargs, expected):
    value = parse_number(text, **kwargs)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("text", "kwargs", "reason"), [
    ("lots", {}, "expected a number"),
    ("1_000", {}, "expected a number"),  # Python's float() would take it, Perl would not
    ("inf", {}, "expected a number"), ("nan", {}, "expected a number"), ("0x10", {}, "expected a number"),
    ("", {}, "expected a number"), ("1e999", {}, "expected a number"),
    ("-1", {}, "expected a non-negative number"),
    ("0", {"above": True}, "expected a positive number"),
    ("2.5", {"integer": True}, "expected a whole number"),
    ("-2", {"integer": True}, "expected a non-negative whole number"),
    ("0", {"integer": True, "minimum": 1}, "expected a whole number of at least 1"),
])
def test_rejected_with_the_reason(text, kwargs, reason):
    with pytest.raises(ValueError, match=f"^{reason}$"):
        parse_number(text, **kwargs)


@pytest.mark.parametrize(("text", "expected"), [
    ("1", True), ("yes", True), ("TRUE", True), (" on ", True), ("0", False), ("no", False), ("False", False),
    ("off", False), ("2", True), ("-1", True), ("00", False),
])
def test_booleans(text, expected):
    assert parse_bool(text) is expected


def test_bad_boolean_names_the_choices():
    with pytest.raises(ValueError, match=r"^expected a boolean \(1/0, yes/no, true/false, on/off\)$"):
        parse_bool("maybe")


def test_lenient_forms_for_job_settings():
    assert number_or(None, 7.0) == 7.0 and number_or("  ", 7.0) == 7.0 and number_or("x", None) is None
    assert number_or("-2", None, above=True) is None and number_or(3, None) == 3.0
    assert bool_or(None, True) is True and bool_or("0", True) is False
    assert bool_or("garbage", False) is True  # like Perl: a non-empty value that is not clearly false


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_every_non_negative_float_round_trips(number):
    assert parse_number(repr(number)) == number


@given(st.integers(min_value=0, max_value=10**15))
def test_every_whole_number_round_trips(number):
    assert parse_number(str(number), integer=True) == number

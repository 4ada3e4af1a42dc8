"""The demo's slot numbers: never a real worker's, never another demo's, never a port in use."""

from __future__ import annotations

import os
import socket

import pytest

from app.demo_env import DEMO_LOW, SlotReservation, command_server_port, reserve_instances, terminal_alive
from tests.helpers import free_instance


@pytest.fixture
def reservations():
    held: list[SlotReservation] = []
    yield held
    for r in held:
        r.release()


def test_the_demo_stays_above_the_numbers_real_workers_use(reservations) -> None:
    for _ in range(20):
        r = reserve_instances(3)
        reservations.append(r)
        assert r.first >= DEMO_LOW
        assert r.instances == [r.first, r.first + 1, r.first + 2]


def test_two_demos_never_get_the_same_numbers(reservations) -> None:
    start = free_instance(300, 3000)
    first = reserve_instances(3, start)
    second = reserve_instances(3, start)  # the same wish at the same moment, as two demos starting together
    reservations += [first, second]
    assert not set(first.instances) & set(second.instances)
    first.release()
    again = reserve_instances(3, start)  # released numbers are free again
    reservations.append(again)
    assert again.instances == first.instances


def test_a_port_in_use_is_skipped(reservations) -> None:
    start = free_instance(300, 3000)
    with socket.socket() as busy:  # e.g. a real isotovideo's command server
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", command_server_port(start + 1)))
        busy.listen()
        r = reserve_instances(2, start)
        reservations.append(r)
    assert start + 1 not in r.instances
    assert r.first >= start + 2


def test_terminal_alive_sees_a_hangup() -> None:
    master, slave = os.openpty()
    try:
        assert terminal_alive(slave)
        os.close(master)
        master = -1
        assert not terminal_alive(slave)
    finally:
        os.close(slave)
        if master >= 0:
            os.close(master)
    r, w = os.pipe()
    try:
        assert not terminal_alive(r)  # a pipe is no terminal
    finally:
        os.close(r)
        os.close(w)

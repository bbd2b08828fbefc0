"""free_port: ports a listener can bind later, which outgoing connections cannot take first."""

import socket
from pathlib import Path

import pytest

from services.common import processes
from services.common.processes import free_port


def first_ephemeral() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(processes._LISTEN_FLOOR <= port < first_ephemeral() for port in ports)


def test_a_port_is_bindable_when_handed_out() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_a_port_someone_listens_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken, socket.socket() as probe:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
        probe.close()
        # The busy port comes up twice before the free one.
        candidates = iter([busy, busy, free])
        monkeypatch.setattr(processes, "_LISTEN_FLOOR", 1024)
        monkeypatch.setattr(processes.random, "randrange", lambda _a, _b: next(candidates))
        monkeypatch.setattr(processes, "_handed_out", set())
        assert free_port() == free


def test_a_range_too_low_to_choose_from_falls_back_to_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "_first_ephemeral_port", lambda: processes._LISTEN_FLOOR + 10)
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))

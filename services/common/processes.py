"""Child processes that never outlive us: a free port to give one, and death with the parent."""

import contextlib
import ctypes
import functools
import os
import random
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Ports handed to listeners are taken below the kernel's ephemeral range: any outgoing connection
# on the machine may be given a port from that range as its own, between the moment a port is
# found free and the moment its listener binds it (a stack binds its HTTP port seconds later,
# after its broker and database are up, while its own clients connect).
_LISTEN_FLOOR = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_handing = threading.Lock()


def free_port() -> int:
    """A TCP port on loopback that nothing is bound to right now, below the kernel's ephemeral
    range (so no outgoing connection takes it before its listener binds it), and not handed out
    before by this process. Falls back to a port the kernel picks when that range is too low."""
    first_ephemeral = _first_ephemeral_port()
    if first_ephemeral - _LISTEN_FLOOR >= 1000:
        with _handing:
            for _ in range(200):
                port = random.randrange(_LISTEN_FLOOR, first_ephemeral)  # noqa: S311 - not a secret
                if port not in _handed_out and _bindable(port):
                    _handed_out.add(port)
                    return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_ephemeral_port() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default when unknown)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (no orphans on kill -9).

    With `parent_pid` (the parent's pid, taken before the fork), a parent that died before the
    request was made is caught too: the child then sends `sig` to itself.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def own_session_child() -> Callable[[], None]:
    """A `preexec_fn` for a child in its own session (`start_new_session=True`): a terminal's
    Ctrl-C or a signal to our process group reaches only us, and we decide how the child stops;
    if we die (even by SIGKILL), it is killed."""
    return functools.partial(die_with_parent, signal.SIGKILL, os.getpid())

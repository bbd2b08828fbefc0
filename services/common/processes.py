"""Child processes that never outlive us: a free port to give one, and death with the parent."""

import contextlib
import ctypes
import functools
import os
import signal
import socket
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

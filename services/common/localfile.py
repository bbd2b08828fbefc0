"""`<data dir>/local.json`: the all-in-one mode's credentials, readable by the owner only."""

import contextlib
import json
import os
from pathlib import Path

import msgspec


class ConsoleCredentials(msgspec.Struct, frozen=True):
    """How to sign in to the local console; `password` is None once it was changed there."""

    url: str
    email: str
    password: str | None


class LocalCredentials(msgspec.Struct, frozen=True):
    """`<data dir>/local.json`: what a developer needs to call the local stack (files written
    before the console existed have no `console`)."""

    baseUrl: str
    adminToken: str
    projectId: str
    apiKey: str
    console: ConsoleCredentials | None = None


def read_credentials(data_dir: Path) -> LocalCredentials | None:
    """The saved credentials, if a previous run left readable ones."""
    path = data_dir / "local.json"
    try:
        return msgspec.json.decode(path.read_bytes(), type=LocalCredentials)
    except (OSError, msgspec.DecodeError):
        return None


def write_credentials(data_dir: Path, creds: LocalCredentials) -> Path:
    """Write local.json readable by its owner only (0600 from creation, never wider)."""
    path = data_dir / "local.json"
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(json.dumps(msgspec.to_builtins(creds), indent=2).encode() + b"\n")
    tmp.replace(path)
    return path

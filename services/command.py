"""What the `codecourier` command is built from: one `Command` per subcommand, and its errors.

The command modules (`servercmds`, `admincmds`, `clientcmds`) each hold a table of commands;
`services.cli` joins them into one parser. They import this module, never `services.cli`.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.common.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Arguments = Callable[[argparse.ArgumentParser], None]


class CliError(Exception):
    """A failure to report in one line and exit 1."""


def no_arguments(_parser: argparse.ArgumentParser) -> None:
    """The argument spec of a command that takes none."""


@dataclass(frozen=True)
class Command:
    """One entry of the command table: its words (`key create`), help, arguments and handler."""

    name: str
    help: str
    run: Handler
    arguments: Arguments = no_arguments
    description: str | None = None


def bounded(kind: type[int] | type[float], low: float, high: float) -> Any:
    """An argparse type accepting numbers of `kind` in [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse

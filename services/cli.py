"""The `codecourier` command: one parser built from the command tables, and `main`.

Server commands run the services (`servercmds`), admin commands manage projects and keys
(`admincmds`), user commands create console users (`usercmds`), client commands send events and
follow logs (`clientcmds`), silence commands mute alerts (`silencecmds`). A command of two words
(`key create`) is an action of its group (`key`).
"""

import argparse
import sys
from collections.abc import Sequence

from services import admincmds, clientcmds, servercmds, silencecmds, usercmds
from services.command import CliError, Command
from services.common.config import ConfigError, load_settings
from services.common.log import configure_logging

COMMANDS: tuple[Command, ...] = (
    *servercmds.COMMANDS,
    *admincmds.COMMANDS,
    *usercmds.COMMANDS,
    *clientcmds.COMMANDS,
    *silencecmds.COMMANDS,
)
GROUPS = {
    "project": "create projects and change plans (admin API)",
    "key": "create, list and revoke API keys (of your project, or any with --project)",
    "user": "create console users (people who sign in with an email and password)",
    "events": "send execution events to the API",
    "logs": "follow completed executions",
    "silence": "mute alert notifications: one-off silences and weekly maintenance windows",
}


def parser() -> argparse.ArgumentParser:
    """The argument parser, with a `--help` for every command."""
    top = argparse.ArgumentParser(
        prog="codecourier",
        description="CodeCourier: workflow-execution logs, alerts and notifications.",
        epilog="Configuration comes from CC_* environment variables (see the README).",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for command in COMMANDS:
        group, _, word = command.name.rpartition(" ")
        if group and group not in groups:
            groups[group] = commands.add_parser(group, help=GROUPS[group]).add_subparsers(
                dest="action", required=True, metavar="ACTION"
            )
        where = groups[group] if group else commands
        sub = where.add_parser(word, help=command.help, description=command.description)
        command.arguments(sub)
        sub.set_defaults(handler=command.run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `codecourier` console script."""
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        status: int = args.handler(args, settings)
        return status
    except (CliError, ConfigError) as exc:
        print(f"codecourier: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

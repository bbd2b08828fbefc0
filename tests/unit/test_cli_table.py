"""The `codecourier` command is built from a table: one entry per command, each reachable with
its own `--help`, and no command module imports the module that joins them."""

import argparse
import ast
import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import cli
from services.command import Command

ROOT = Path(__file__).resolve().parents[2]
COMMAND_MODULES = (
    "admincmds", "apiclient", "clientcmds", "command", "eventsend", "logtail", "servercmds",
    "silencecmds",
)  # fmt: skip


def subcommand(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The parser of a command of one or two words."""
    for word in words:
        (actions,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = actions.choices[word]
    return parser


def test_every_command_of_the_table_parses_to_its_handler() -> None:
    names = [command.name for command in cli.COMMANDS]
    assert len(names) == len(set(names)) == 17
    top = cli.parser()
    for command in cli.COMMANDS:
        parser = subcommand(top, command.name.split())
        assert parser.get_default("handler") is command.run
        assert parser.description == command.description
    assert set(cli.GROUPS) == {c.name.split()[0] for c in cli.COMMANDS if " " in c.name}


def test_a_group_lists_its_actions_with_their_help() -> None:
    text = subcommand(cli.parser(), ["key"]).format_help()
    for command in cli.COMMANDS:
        if command.name.startswith("key "):
            assert command.name.split()[1] in text and command.help in text


def test_no_command_module_imports_the_cli() -> None:
    for name in COMMAND_MODULES:
        tree = ast.parse((ROOT / "services" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "services.cli", name
                assert not (node.module == "services" and any(a.name == "cli" for a in node.names))
            elif isinstance(node, ast.Import):
                assert all(a.name != "services.cli" for a in node.names), name


def test_client_commands_load_no_server_code() -> None:
    probe = (
        "import sys, services.cli; "
        "print(sorted(m for m in ('aiokafka', 'faust', 'sqlalchemy', 'services.wiring') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.fixture
def quiet_main(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`main` without touching this process's logging or collector settings."""
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("quiet_main")
@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("api", "`codecourier api` needs CC_KAFKA_BOOTSTRAP; `codecourier up` runs everything"),
        ("logsink", "`codecourier logsink` needs CC_KAFKA_BOOTSTRAP; `codecourier up` runs all"),
        ("alerts", "`codecourier alerts` needs CC_KAFKA_BOOTSTRAP; `codecourier up` runs all"),
        ("dispatcher", "`codecourier dispatcher` needs CC_KAFKA_BOOTSTRAP"),
    ],
)
def test_a_service_alone_needs_an_external_broker(
    command: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CC_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CC_METRICS_PORT", raising=False)
    assert cli.main([command]) == 1
    assert capsys.readouterr().err.startswith(f"codecourier: {message}")


@pytest.mark.usefixtures("quiet_main")
def test_a_bad_variable_stops_any_command_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CC_DISPATCHER_LANE_QUEUE", "many")
    assert cli.main(["key", "list", "--url", "http://127.0.0.1:9", "--api-key", "x"]) == 1
    assert capsys.readouterr().err == (
        "codecourier: CC_DISPATCHER_LANE_QUEUE must be a number, got 'many'\n"
    )


def test_a_command_without_arguments_takes_none() -> None:
    command = Command("probe", "a probe", lambda args, settings: 0)
    parser = argparse.ArgumentParser()
    command.arguments(parser)
    assert [a.dest for a in parser._actions] == ["help"]

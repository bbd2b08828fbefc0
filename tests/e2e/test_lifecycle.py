"""`make run` leaves no broker behind, however it is stopped."""

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from services.common.processes import free_port
from tests.processes import service_env, start_service, wait_for_file


def _pids_with(fragment: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if fragment in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _runner_pids(data_dir: Path) -> list[int]:
    """`codecourier up` processes started with this data dir (their environment says so)."""
    marker = f"CC_DATA_DIR={data_dir}".encode()
    found = []
    for pid in _pids_with("codecourier up"):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return found


def _gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def _as_at_a_terminal() -> None:
    """In the child: Ctrl-C as at a terminal, even when the tests run where SIGINT is ignored
    (a background job of a shell without job control), which a child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_make_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    kafka_port = free_port()
    env = service_env(tmp_path / "data", http_port=free_port(), kafka_port=kafka_port)
    make = start_service(
        ["make", "-s", "run"],
        env,
        tmp_path / "run.log",
        own_session=True,
        preexec_fn=_as_at_a_terminal,
    )
    creds = wait_for_file(tmp_path / "data" / "local.json", make)
    assert creds["apiKey"].startswith("cc_live_")
    mode = (tmp_path / "data" / "local.json").stat().st_mode & 0o777
    assert mode == 0o600
    assert set(json.loads((tmp_path / "data" / "local.json").read_text())) == {
        "baseUrl",
        "adminToken",
        "projectId",
        "apiKey",
        "console",
    }
    brokers = _pids_with(f"tcp://127.0.0.1:{kafka_port}")
    assert len(brokers) == 1, brokers
    return make, brokers[0], kafka_port


@pytest.mark.parametrize("how", ["sigterm-make", "sigkill-make", "sigkill-runner"])
def test_stopping_make_run_leaves_no_broker(tmp_path: Path, how: str) -> None:
    make, broker_pid, _ = _start_make_run(tmp_path)
    runner = _runner_pids(tmp_path / "data")
    assert len(runner) == 1, runner
    try:
        if how == "sigterm-make":
            make.send_signal(signal.SIGTERM)
        elif how == "sigkill-make":
            make.send_signal(signal.SIGKILL)
        else:
            os.kill(runner[0], signal.SIGKILL)
        make.wait(20)
        assert _gone_within(broker_pid, 15), f"broker {broker_pid} outlived {how}"
        assert _gone_within(runner[0], 15), f"codecourier up outlived {how}"
    finally:
        for pid in [broker_pid, *runner]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm-group"])
def test_a_signal_to_the_process_group_of_make_run_stops_it(tmp_path: Path, sig: int) -> None:
    """A terminal's Ctrl-C (or a supervisor's SIGTERM) reaches make and every process of its
    group; the stack must still stop in order, broker last, within its bound."""
    make, broker_pid, _ = _start_make_run(tmp_path)
    runner = _runner_pids(tmp_path / "data")
    try:
        os.killpg(make.pid, sig)
        make.wait(35)
        assert _gone_within(broker_pid, 5), f"broker {broker_pid} outlived the stop"
        assert _gone_within(runner[0], 5), "codecourier up outlived the stop"
        told = (tmp_path / "run.log").read_text(errors="replace")
        assert "every accepted event is stored" in told, told
    finally:
        for pid in [broker_pid, *runner]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

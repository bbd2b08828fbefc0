"""Consumer-group members as child processes (`codecourier alerts`, `codecourier dispatcher`):
started, killed and added by the scale-out test and benchmark, and the partition assignments
they report in their structured logs.

A member logs one line per assignment, its whole assignment (the eager protocol of aiokafka and
faust): the dispatcher `dispatcher.assigned`, the alert engine `alerts.assigned` (its
`executions` partitions; the other topics it reads are co-partitioned with it). Those lines are
how a rebalance is seen from outside, as an operator would see it.
"""

import json
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.processes import own_session_child
from tests.processes import CLI, service_env, start_service

ASSIGNED_BY = {
    "dispatcher": "dispatcher.assigned",
    "alerts": "alerts.assigned",
    "logsink": "logsink.assigned",
}


def log_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines of a service's log (anything else, such as a traceback, is skipped)."""
    if not path.exists():
        return
    for line in path.read_bytes().splitlines():
        if line.startswith(b"{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def partitions_of(line: dict[str, Any], topic: str) -> frozenset[int]:
    """The partitions of `topic` in an assignment line: `topic/partition` names, or numbers
    (the log sink's line names the partitions of `executions` alone)."""
    prefix = f"{topic}/"
    return frozenset(
        name if isinstance(name, int) else int(name[len(prefix) :])
        for name in line.get("partitions", [])
        if isinstance(name, int) or name.startswith(prefix)
    )


@dataclass
class Member:
    """One member process of a consumer group, with a log file of its own."""

    service: str  # "alerts", "dispatcher" or "logsink"
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Member":
        self.process = start_service(
            [CLI, self.service], self.env, self.log_path,
            own_session=True, preexec_fn=own_session_child(),
        )  # fmt: skip
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
        """Send `sig` and wait for the exit; SIGKILL if it lingers."""
        if not self.alive:
            return
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def lines(self, event: str) -> list[dict[str, Any]]:
        """This member's log lines of one event."""
        return [line for line in log_lines(self.log_path) if line.get("event") == event]

    def assignments(self, topic: str) -> list[frozenset[int]]:
        """Every assignment this member logged, oldest first."""
        return [partitions_of(line, topic) for line in self.lines(ASSIGNED_BY[self.service])]


@dataclass
class Group:
    """The members of one consumer group, all started alike (`settings` on top of the
    environment of a child service), each in a data directory of its own."""

    service: str
    bootstrap: str
    work: Path
    settings: Mapping[str, str]
    members: list[Member] = field(default_factory=list)

    def add(self) -> Member:
        name = f"{self.service}-{len(self.members)}"
        env = service_env(
            self.work / name, bootstrap=self.bootstrap, log_level="info", settings=self.settings
        )
        member = Member(self.service, env, self.work / f"{name}.log").start()
        self.members.append(member)
        return member

    def start(self, count: int) -> "Group":
        for _ in range(count):
            self.add()
        return self

    def live(self) -> list[Member]:
        return [m for m in self.members if m.alive]

    def current(self, topic: str) -> dict[int, frozenset[int]]:
        """Each live member's latest assignment, by member index (members yet to log one are
        left out)."""
        found = {}
        for index, member in enumerate(self.members):
            if member.alive and (seen := member.assignments(topic)):
                found[index] = seen[-1]
        return found

    def settled(self, topic: str, partitions: int) -> bool:
        """Whether every live member holds a share and the shares split `topic` exactly."""
        shares = self.current(topic)
        if len(shares) != len(self.live()) or not all(shares.values()):
            return False
        held = [p for share in shares.values() for p in share]
        return sorted(held) == list(range(partitions))

    def stop(self) -> None:
        for member in self.members:
            member.stop()

"""`codecourier events send`: an NDJSON file posted to the API in batches, with progress.

Every event is idempotent on `(type, executionId)`, which is why resending a batch after a
timeout, a 429 or a 5xx is always safe.
"""

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.apiclient import Reply, Unreachable, call, describe
from services.command import CliError

MAX_EVENT_BYTES = 256 * 1024
# The server's default CC_MAX_BODY_BYTES; a 413 on a smaller server limit halves the batch.
MAX_BODY_BYTES = 1024 * 1024
BACKOFF_S = (1.0, 2.0, 4.0, 8.0)
PROGRESS_EVERY_S = 2.0
_EVENT_FIELD = re.compile(r"events\[(\d+)\]((?:\.[A-Za-z0-9_$]+|\[\d+\])*)")

Line = tuple[int, bytes]


# ---- reading and batching (pure) -----------------------------------------------------------


def numbered_events(
    stream: Iterable[bytes], max_event_bytes: int = MAX_EVENT_BYTES
) -> Iterator[Line]:
    """(line number, event) for every non-blank line; an oversized line stops with its number."""
    for number, raw in enumerate(stream, start=1):
        line = raw.strip()
        if not line:
            continue
        if len(line) > max_event_bytes:
            raise CliError(
                f"line {number}: event is {len(line)} bytes; the limit is {max_event_bytes} "
                f"({max_event_bytes // 1024} KiB)"
            )
        yield number, line


def batches(
    lines: Iterable[Line], size: int, max_bytes: int = MAX_BODY_BYTES
) -> Iterator[list[Line]]:
    """Consecutive batches of at most `size` events and `max_bytes` of NDJSON body."""
    batch: list[Line] = []
    nbytes = 0
    for line in lines:
        if batch and (len(batch) >= size or nbytes + len(line[1]) + 1 > max_bytes):
            yield batch
            batch, nbytes = [], 0
        batch.append(line)
        nbytes += len(line[1]) + 1
    if batch:
        yield batch


def file_lines(lines: list[Line]) -> Callable[[str], str]:
    """Rewrite `events[i].field` (relative to a batch) as `line N, field` of the file."""

    def rename(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            index = int(match.group(1))
            if index >= len(lines):
                return match.group(0)
            path = match.group(2).lstrip(".")
            return f"line {lines[index][0]}" + (f", {path}" if path else "")

        return _EVENT_FIELD.sub(one, text)

    return rename


def span(lines: list[Line]) -> str:
    """The file lines a batch covers, for messages."""
    first, last = lines[0][0], lines[-1][0]
    return f"line {first}" if first == last else f"lines {first}-{last}"


# ---- progress and summary ------------------------------------------------------------------


class Progress:
    """Events sent so far on stderr: a redrawn bar on a terminal, a line every few s elsewhere."""

    def __init__(self, total: int | None, stream: IO[str] = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.shown_at = self.started
        self.sent = 0

    def rate(self) -> float:
        """Events per second since the start."""
        return self.sent / max(time.monotonic() - self.started, 1e-6)

    def update(self, sent: int) -> None:
        """Record `sent` events and show them when it is time to."""
        self.sent = sent
        if self.tty:
            self.stream.write("\r" + self._bar())
            self.stream.flush()
        elif time.monotonic() - self.shown_at >= PROGRESS_EVERY_S:
            self.stream.write(f"sent {self._count()} events, {self.rate():,.0f} events/s\n")
            self.stream.flush()
            self.shown_at = time.monotonic()

    def note(self, text: str) -> None:
        """A message between progress updates (retries, waits)."""
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line so that what follows starts on a fresh one."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _count(self) -> str:
        return f"{self.sent:,}/{self.total:,}" if self.total is not None else f"{self.sent:,}"

    def _bar(self, width: int = 30) -> str:
        text = f"{self._count()} events  {self.rate():,.0f} events/s"
        if not self.total:
            return text
        done = width * self.sent // self.total
        return f"[{'#' * done}{'-' * (width - done)}] {text}"


@dataclass
class Sender:
    """Posts batches of one file, retrying what can be retried and counting what was accepted."""

    url: str
    key: str
    progress: Progress
    accepted: int = 0
    requests: int = 0
    retries: int = 0
    answered: bool = False

    def send(self, lines: list[Line]) -> None:
        """Post one batch until it is accepted; raise CliError when it cannot be."""
        failures = 0
        while True:
            reply = self._post(lines, failures)
            if reply is None or reply.status >= 500:
                failures += 1
                self._back_off(lines, reply, failures)
            elif reply.status == 429:
                self._wait(lines, reply)
            elif reply.status == 413 and len(lines) > 1:
                half = len(lines) // 2
                self.progress.note(f"{span(lines)}: body too large; splitting the batch in two")
                self.send(lines[:half])
                self.send(lines[half:])
                return
            elif reply.status == 202:
                self._accepted(reply)
                return
            else:
                raise CliError(describe(reply, file_lines(lines)))

    def _post(self, lines: list[Line], failures: int) -> Reply | None:
        body = b"\n".join(line for _, line in lines) + b"\n"
        try:
            reply = call(f"{self.url}/api/v1/events", self.key, body, "application/x-ndjson")
        except Unreachable as exc:
            # Before any answer this is a wrong URL or a stopped server: say so at once.
            if not self.answered or failures >= len(BACKOFF_S):
                raise CliError(str(exc)) from None
            return None
        self.answered = True
        return reply

    def _back_off(self, lines: list[Line], reply: Reply | None, failures: int) -> None:
        what = "no answer" if reply is None else f"HTTP {reply.status}"
        if failures > len(BACKOFF_S):
            raise CliError(f"{describe(reply) if reply else what} after {failures} attempts")
        delay = max(BACKOFF_S[failures - 1], reply.retry_after_s if reply else 0.0)
        self.progress.note(f"{what} for {span(lines)}; retrying in {delay:g} s")
        self.retries += 1
        time.sleep(delay)

    def _wait(self, lines: list[Line], reply: Reply) -> None:
        delay = reply.retry_after_s or 1.0
        self.progress.note(f"rate limited; resending {span(lines)} in {delay:g} s")
        self.retries += 1
        time.sleep(delay)

    def _accepted(self, reply: Reply) -> None:
        self.requests += 1
        self.accepted += int(reply.body["data"]["accepted"])
        self.progress.update(self.accepted)

    def so_far(self) -> str:
        """What was accepted before a failure, for its message."""
        if not self.accepted:
            return "; no events were accepted"
        return (
            f"; {self.accepted} events before it were accepted "
            "(resending the whole file is safe: events are idempotent)"
        )


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise CliError(f"cannot read: {exc.strerror}") from None


def _count(stream: IO[bytes]) -> int | None:
    """How many events a regular file holds, every size checked before anything is sent."""
    if not stream.seekable():
        return None
    total = sum(1 for _ in numbered_events(stream))
    stream.seek(0)
    return total


def send_events(url: str, key: str, path: str, batch_size: int, as_json: bool) -> None:
    """`codecourier events send`: post an NDJSON file in batches and print a summary."""
    try:
        sender, elapsed_s = _send_file(url, key, path, batch_size)
    except CliError as exc:
        raise CliError(f"{path}: {exc}") from None
    _summary(sender, elapsed_s, as_json)


def _send_file(url: str, key: str, path: str, batch_size: int) -> tuple[Sender, float]:
    with _open(path) as stream:
        try:
            total = _count(stream)
        except CliError as exc:
            raise CliError(f"{exc}; nothing was sent") from None
        progress = Progress(total)
        sender = Sender(url, key, progress)
        try:
            for batch in batches(numbered_events(stream), batch_size):
                sender.send(batch)
        except CliError as exc:
            raise CliError(f"{exc}{sender.so_far()}") from None
        finally:
            progress.close()
    return sender, time.monotonic() - progress.started


def _summary(sender: Sender, elapsed_s: float, as_json: bool) -> None:
    rate = sender.accepted / max(elapsed_s, 1e-6)
    if as_json:
        summary = {
            "accepted": sender.accepted,
            "requests": sender.requests,
            "retries": sender.retries,
            "elapsedS": round(elapsed_s, 3),
            "eventsPerS": round(rate, 1),
        }
        print(json.dumps(summary))
        return
    retried = f" ({sender.retries} retried)" if sender.retries else ""
    requests = "1 request" if sender.requests == 1 else f"{sender.requests} requests"
    print(
        f"accepted {sender.accepted} events in {requests}{retried}, "
        f"{elapsed_s:.2f} s, {rate:,.0f} events/s"
    )

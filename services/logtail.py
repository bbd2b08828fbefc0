"""`codecourier logs tail`: follow completed executions by cursor and print each once."""

import json
import os
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.apiclient import Reply, Unreachable, call, describe
from services.command import CliError

SKIP_PAGE = 1000


@dataclass
class Follower:
    """Follows `GET /api/v1/logs?order=asc` by cursor; the cursor is the only state."""

    url: str
    key: str
    filters: Mapping[str, str]
    cursor: str | None = None

    def page(self, limit: int) -> Any:
        """The next page after the cursor, waiting out rate limits and transient failures."""
        failures = 0
        while True:
            try:
                reply = call(self._url(limit), self.key)
            except Unreachable as exc:
                if self.cursor is None:
                    raise CliError(str(exc)) from None
                reply = Reply(0, 0.0, None)
            if reply.status == 200:
                return self._advance(reply.body)
            if reply.status == 429:
                _pause("rate limited", reply.retry_after_s or 1.0)
            elif reply.status >= 500 or reply.status == 0:
                failures += 1
                what = f"HTTP {reply.status}" if reply.status else "no answer"
                _pause(what, max(reply.retry_after_s, min(2.0**failures, 30.0)))
            else:
                raise CliError(describe(reply))

    def _advance(self, page: Any) -> Any:
        # Following without a cursor would restart from the oldest log and print repeats.
        if not page.get("nextCursor"):
            raise CliError("the server sent no nextCursor for order=asc; cannot follow")
        self.cursor = page["nextCursor"]
        return page

    def _url(self, limit: int) -> str:
        query = {"order": "asc", "limit": str(limit), **self.filters}
        if self.cursor:
            query["cursor"] = self.cursor
        return f"{self.url}/api/v1/logs?{urllib.parse.urlencode(query)}"


def _pause(reason: str, delay_s: float) -> None:
    print(f"{reason}; next poll in {delay_s:g} s", file=sys.stderr, flush=True)
    time.sleep(delay_s)


def log_line(item: Mapping[str, Any]) -> str:
    """One log as a line: completion time, level, workflow, execution, duration, cost."""
    cost = (item.get("cost") or {}).get("total", 0)
    return (
        f"{item['endedAt']}  {item['level']:<5}  {item['workflowId']}  {item['executionId']}  "
        f"{item['totalDurationMs']} ms  ${cost:.6g}"
    )


def _skip_history(follower: Follower) -> int:
    skipped = 0
    while True:
        page = follower.page(SKIP_PAGE)
        skipped += len(page["data"])
        if not page["hasMore"]:
            return skipped


@dataclass(frozen=True)
class TailOptions:
    """How `logs tail` pages and prints."""

    since_start: bool
    interval_s: float
    limit: int
    as_json: bool


def tail_logs(url: str, key: str, filters: Mapping[str, str], options: TailOptions) -> None:
    """`codecourier logs tail`: print every new completed execution until interrupted."""
    follower = Follower(url, key, filters)
    try:
        if not options.since_start:
            skipped = _skip_history(follower)
            if sys.stderr.isatty():
                print(f"skipped {skipped} earlier logs; following (Ctrl-C stops)", file=sys.stderr)
        while True:
            page = follower.page(options.limit)
            for item in page["data"]:
                print(json.dumps(item) if options.as_json else log_line(item), flush=True)
            if not page["hasMore"]:
                time.sleep(options.interval_s)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

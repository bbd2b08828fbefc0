"""Where a request's time goes: the database's share, for `Server-Timing` and the access log.

The HTTP middleware opens a `Spent` for each request in a context variable (what the request's
handler awaits sees it, and so do the tasks it gathers); the ClickHouse client adds each query's
time to it, measured as its caller waits for it: the hop to the query's thread and back
included. Queries run side by side add up to more than the time they took together.
"""

import contextvars
from dataclasses import dataclass


@dataclass
class Spent:
    """The database time of one request so far."""

    db_s: float = 0.0
    queries: int = 0


_SPENT: contextvars.ContextVar[Spent | None] = contextvars.ContextVar("spent", default=None)


def begin() -> tuple[Spent, contextvars.Token[Spent | None]]:
    """Start counting a request's database time (`end` with the token when it is done)."""
    spent = Spent()
    return spent, _SPENT.set(spent)


def end(token: contextvars.Token[Spent | None]) -> None:
    """Stop counting: what runs after the request (on the same connection) is not its."""
    _SPENT.reset(token)


def add_query(seconds: float) -> None:
    """Count a query's time against the request being served, if any."""
    spent = _SPENT.get()
    if spent is not None:
        spent.db_s += seconds
        spent.queries += 1


def server_timing(spent: Spent, total_s: float) -> str:
    """The `Server-Timing` header value: the database's time and the whole request's, in ms."""
    what = "1 query" if spent.queries == 1 else f"{spent.queries} queries"
    return f'db;dur={spent.db_s * 1000:.2f};desc="{what}", total;dur={total_s * 1000:.2f}'

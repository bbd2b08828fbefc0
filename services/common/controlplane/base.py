"""What every group of control-plane queries shares: the engine and its write transactions."""

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Queries:
    """The engine, and `writing()`: one write transaction.

    SQLite has one writer at a time, and its busy wait is neither fair nor ordered: under load a
    writer can wait out the whole busy timeout while others keep taking the lock, and a
    transaction that reads before it writes fails at once when another committed in between. So
    on SQLite the write transactions of one process take their turn on a lock first; the busy
    timeout is left for other processes. PostgreSQL's row locks need no such help."""

    engine: AsyncEngine

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._serial = engine.dialect.name == "sqlite"
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that commits on exit (rolls back on an exception)."""
        if not self._serial:
            async with self.engine.begin() as conn:
                yield conn
            return
        turn = self._turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with turn, self.engine.begin() as conn:
            yield conn

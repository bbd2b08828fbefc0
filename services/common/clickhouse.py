"""ClickHouse through clickhouse-connect (server over HTTP, or chDB in-process), with migrations."""

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import clickhouse_connect
import msgspec
import structlog
from clickhouse_connect.driver.exceptions import Error as DriverError

from services.common import chschema, timing
from services.common.config import QueryLimits
from services.common.errors import QueryTooBroad, Unavailable

log = structlog.get_logger(__name__)
RecordT = TypeVar("RecordT", bound=msgspec.Struct)

MIGRATIONS_TABLE = "cc_schema_migrations"
# Server error codes that blame the data sent, not the server (ClickHouse's ErrorCodes.cpp): an
# insert refused with one of these fails again however often it is retried.
DATA_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  # CANNOT_PARSE_QUOTED_STRING
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  # ATTEMPT_TO_READ_AFTER_EOF
    33,  # CANNOT_READ_ALL_DATA
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    128,  # TOO_LARGE_ARRAY_SIZE
    130,  # CANNOT_READ_ARRAY_FROM_TEXT
    131,  # TOO_LARGE_STRING_SIZE
    190,  # SIZES_OF_ARRAYS_DONT_MATCH
    306,  # TOO_DEEP_RECURSION
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    354,  # CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING
    376,  # CANNOT_PARSE_UUID
    407,  # DECIMAL_OVERFLOW
    467,  # CANNOT_PARSE_BOOL
    691,  # UNKNOWN_ELEMENT_OF_ENUM
})  # fmt: skip


class RefusedData(Exception):
    """ClickHouse refused a statement for the data it carried (a parse or range error): the same
    rows fail again on retry, unlike `Unavailable`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ClickHouse error codes of the per-query limits: what each means for the caller.
_TIMEOUT_CODES = {159}  # TIMEOUT_EXCEEDED
_MEMORY_CODES = {241}  # MEMORY_LIMIT_EXCEEDED
_TOO_BROAD_CODES = {158, 307}  # TOO_MANY_ROWS, TOO_MANY_BYTES
LIMIT_RETRY_AFTER_S = 5
_APPLIED = "SELECT version FROM cc_schema_migrations FINAL"


class ClickHouse:
    """clickhouse-connect clients driven from asyncio from worker threads: one for queries, one
    for inserts and statements. clickhouse-connect's chDB backend runs one call at a time per
    client (a lock per chDB connection handle), so with a single client a page query waited
    behind a sink insert; two handles share the one engine and run side by side."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None  # inserts and statements
        self._reader: Any = None  # queries
        self._lock = threading.Lock()

    @property
    def embedded(self) -> bool:
        """Whether this is chDB (one process per data directory)."""
        return self.url.startswith("chdb://")

    def _connect(self, read: bool = False) -> Any:
        with self._lock:
            if read:
                self._reader = self._reader or self._open()
                return self._reader
            self._client = self._client or self._open()
            return self._client

    def _open(self) -> Any:
        if self.embedded:
            return clickhouse_connect.get_client(dsn=self.url)
        return clickhouse_connect.get_client(dsn=self.url, autogenerate_session_id=False)

    def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # Queries and writes run side by side (reads never queue behind a sink insert); only
        # opening and closing the clients is serialised.
        try:
            return getattr(self._connect(read=method == "query"), method)(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, DriverError) and exc.code in DATA_ERROR_CODES:
                raise RefusedData(str(exc)[:2000], exc.code) from exc
            if _is_connection_error(exc):
                raise Unavailable(f"clickhouse unreachable: {type(exc).__name__}") from exc
            raise

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run a statement that returns no rows."""
        return await asyncio.to_thread(self._run, "command", sql, parameters=parameters)

    async def rows(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        limits: QueryLimits | None = None,
        narrow: str = "",
    ) -> list[tuple[Any, ...]]:
        """Run a query with bound parameters and return its rows.

        With `limits`, ClickHouse stops the query at them: time or memory is `Unavailable`
        (retry later), too many rows is `QueryTooBroad` whose message ends with `narrow`.
        """
        result = await self._query(sql, parameters, settings, limits, narrow)
        return list(result.result_rows)

    async def records(
        self,
        kind: type[RecordT],
        sql: str,
        parameters: dict[str, Any] | None = None,
        limits: QueryLimits | None = None,
        narrow: str = "",
    ) -> list[RecordT]:
        """Like `rows`, each row decoded into `kind` by column name (not by position)."""
        result = await self._query(sql, parameters, None, limits, narrow)
        names = result.column_names
        return [
            msgspec.convert(dict(zip(names, row, strict=True)), kind) for row in result.result_rows
        ]

    async def _query(
        self,
        sql: str,
        parameters: dict[str, Any] | None,
        settings: dict[str, Any] | None,
        limits: QueryLimits | None,
        narrow: str,
    ) -> Any:
        if limits is not None:
            settings = {**limit_settings(limits), **(settings or {})}
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(
                self._run, "query", sql, parameters=parameters, settings=settings
            )
        except Exception as exc:
            error = limit_error(exc, narrow) if limits is not None else None
            if error is None:
                raise
            raise error from exc
        finally:
            timing.add_query(time.perf_counter() - started)

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Insert rows in one block."""
        await asyncio.to_thread(
            self._run, "insert", table, rows, column_names=list(columns), settings=settings or {}
        )

    async def insert_json(
        self,
        table: str,
        data: bytes,
        columns: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Insert `JSONCompactEachRow` bytes: ClickHouse parses them, outside the GIL."""
        await asyncio.to_thread(
            self._run, "raw_insert", table, list(columns), insert_block=data,
            settings=settings or {}, fmt="JSONCompactEachRow",
        )  # fmt: skip

    async def ping(self) -> None:
        """Raise Unavailable unless ClickHouse answers."""
        await self.rows("SELECT 1")

    async def migrate(
        self, migrations: list[tuple[int, str, list[str]]] | None = None
    ) -> list[int]:
        """Apply pending migrations in order; return the versions applied."""
        await self.command(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, "
            "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree "
            "ORDER BY version"
        )
        done = {version for (version,) in await self.rows(_APPLIED)}
        applied = []
        # Every statement is idempotent (IF NOT EXISTS): a crash between a statement and its
        # bookkeeping row is repaired by running the migration again.
        for version, name, statements in chschema.MIGRATIONS if migrations is None else migrations:
            if version in done:
                continue
            # Said before it runs: one may rewrite a column of every part (migration 5).
            log.info("clickhouse.migrating", version=version, name=name)
            started = time.monotonic()
            for statement in statements:
                await self.command(statement)
            await self.insert(MIGRATIONS_TABLE, [(version, name)], ["version", "name"])
            log.info(
                "clickhouse.migrated", version=version, name=name,
                seconds=round(time.monotonic() - started, 2),
            )  # fmt: skip
            applied.append(version)
        return applied

    def close(self) -> None:
        """Close the client (for chDB this releases the data directory)."""
        with self._lock:
            for client in (self._reader, self._client):
                if client is not None:
                    client.close()
            self._client = self._reader = None


def limit_settings(limits: QueryLimits) -> dict[str, Any]:
    """ClickHouse settings that make a query throw at these limits (0 leaves one off)."""
    return {
        "max_execution_time": limits.max_execution_seconds,
        "timeout_overflow_mode": "throw",
        "max_memory_usage": limits.max_memory_bytes,
        "max_rows_to_read": limits.max_rows_to_read,
        "read_overflow_mode": "throw",
    }


def limit_error(exc: Exception, narrow: str) -> Exception | None:
    """The AppError of a query stopped by its limits; None for any other failure."""
    code = getattr(exc, "code", None)
    if code in _TIMEOUT_CODES:
        return Unavailable(
            "The query took longer than this route allows; retry later or narrow it"
            + (f" ({narrow})." if narrow else "."),
            LIMIT_RETRY_AFTER_S,
        )
    if code in _MEMORY_CODES:
        return Unavailable(
            "The query needed more memory than this route allows; retry later or narrow it"
            + (f" ({narrow})." if narrow else "."),
            LIMIT_RETRY_AFTER_S,
        )
    if code in _TOO_BROAD_CODES:
        return QueryTooBroad(
            "The query would read more rows than this route allows; narrow it"
            + (f": {narrow}." if narrow else ".")
        )
    return None


def _is_connection_error(exc: Exception) -> bool:
    text = type(exc).__name__
    return isinstance(exc, OSError) or "OperationalError" in text or "Connection" in text

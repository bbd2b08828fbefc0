"""The alert engine's faust consumer: how long its fetcher waits for records."""

from typing import Any

from faust.types import TP

from services.alerts.transport import BUFFERED_WAIT_S, AlertsApp


async def test_the_fetcher_asks_again_soon_while_a_stream_buffer_is_full() -> None:
    # faust leaves a partition whose stream buffer filled out of its fetch, and its wait of a
    # second does not end when the buffer drains: the wait is short while one is left out.
    app = AlertsApp("transport-test", broker="kafka://127.0.0.1:9", store="memory://")
    consumer: Any = app.consumer
    waits: list[float] = []

    async def getmany(active_partitions: set[TP], **kwargs: float) -> dict[TP, list[Any]]:
        waits.append(kwargs["timeout"])  # where faust hands the fetch to its consumer thread
        return {}

    consumer._getmany = getmany
    consumer._thread.thread_loop.close()  # the consumer thread's loop, never run here
    executions, ticks = TP("executions", 0), TP("ticks", 0)
    consumer._set_active_tps({executions, ticks})
    await consumer._wait_next_records(1.0)
    consumer.on_buffer_full(executions)
    await consumer._wait_next_records(1.0)
    consumer.on_buffer_drop(executions)
    await consumer._wait_next_records(1.0)
    assert waits == [1.0, BUFFERED_WAIT_S, 1.0]

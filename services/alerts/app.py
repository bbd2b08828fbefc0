"""The alert engine on faust-streaming: executions, ticks, subscriptions and silences in,
notifications out.

One agent (concurrency 1) reads the four co-partitioned topics, so a workflow's records are
handled on one partition, in log order, by one worker. Three plain tables hold what must survive
a restart, each written only while handling a record of the partition its key belongs to:
- `workflow-states`: key `<project>/<workflow>` (the topic key); the value (`Stored`) is the
  workflow's cost per month, the project's plan and the rules' `WorkflowState` (buckets, the
  latest execution ids as 8-byte digests, watches with cooldowns and episodes). Only workflows
  that a subscription of their project covers have one, at most `MAX_WORKFLOWS` per project and
  partition (the least recently written go, counted by `cc_alerts_evicted_workflows_total`):
  minting workflow ids costs the engine nothing more;
- `project-costs`: key `<project>/<partition>`, the cost per month of the project's executions
  counted without a workflow state, and of workflows that lost theirs (the month-to-date cost
  in payloads adds the watched workflows' own costs, over the partitions this worker holds),
  with the ids of the latest executions counted here, so a resent one is not billed twice;
- `subscriptions`: key `<subscription id>/<partition>`, the version this partition applied,
  with the offset of its earliest marker there.
The tables live in RocksDB under `CC_DATA_DIR/alerts/<group>` (`CC_ALERTS_STORE`; `memory://`
keeps them in memory), backed by their changelog topics: a restarted worker opens its store
and replays only the changelog written after the store's last flush. `Views` index the tables
in memory by partition and project, from the store once recovery is complete; the
subscriptions are also read ahead from their compacted topic when partitions are assigned.
Silences have no table: they are read ahead from their compacted topic (every version of
every silence, ended ones included) at every assignment, then followed in the stream. Like a
subscription, each silence version is also a marker on `executions` (`kind: "silence"`) and its
compacted records carry the marker's offset; a version applies to the execution records after
its marker on their partition (see `Views.project_silences`). Acknowledgements (`alert-acks`)
are read ahead and followed the same way, with their markers on `executions` (`kind: "ack"`):
one applies to the execution records after its marker (see `Views.acknowledged`).

When a subscription begins. The API (through its outbox) writes every subscription change
first as a marker record on each partition of `executions` (the `SubscriptionRecord` itself,
`kind: "subscription"`), then the compacted `subscriptions` records, each carrying the offset
of the marker on its partition (`markerOffset`), and answers the change only after both are
acknowledged. A subscription applies to the execution records of partition p that come after
its earliest marker on p: an order the log of one partition gives, whichever topic the worker
learns the subscription from first (the marker in the stream, or the compacted record read
ahead or consumed), so an execution sent after the API's answer is always evaluated with it,
and a replay into a fresh worker decides the same and reproduces the same alert ids. Records
without a marker offset (written before markers existed) fall back to `receivedAtMs >=
createdAtMs`; ticks use that time rule too. A later version of a subscription replaces the
earlier one when the worker learns it (as before).

Poison records. `Engine.handle` never raises for a record: anything a record's handling raises
(undecodable bytes, a value that breaks a rule, RecursionError from deep JSON) sends it to
`alerts.dlq` with headers `cc-consumer`, `cc-error` and `cc-source` (`topic/partition/offset`),
counted by `cc_alerts_dead_letters_total{topic}`, and the stream goes on: its offset is
committed like any other. Only `Unavailable` (the broker, when producing) is retried, with
back-off, on the same record.

Records come in batches (`noack_take`: at most `CC_ALERTS_BATCH` records, or what arrives within
`CC_ALERTS_BATCH_MS`), each decided in log order as it would be alone; a batch's effects happen
in one order (see `services.alerts.batch`): its notifications and alert events are produced and
acknowledged, then the state rows it changed (with their cooldowns) are written, each once
(a partition's rows to the store, then to the changelog, see `transport.write_rows`), then
its events are acknowledged and faust commits their offsets (after flushing the changelog). Each
record of `executions` and `ticks` is handled once per assignment and in log order, whatever
faust's fetcher hands on around a rebalance (see `services.alerts.order`). A crash therefore
repeats work and never loses it; a repeated notification carries the same ids,
which the dispatcher deduplicates. Time-only rules run on tick records (see `ticks`), never on this
process's clock.

The faust transport is adapted to the embedded broker (see `services.alerts.transport`).
"""

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import faust
import structlog
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from mode import CrashingSupervisor

from schemas import topics
from services.alerts.engine import Engine
from services.alerts.order import GAPLESS, Order
from services.alerts.producers import dead_letter_sender, event_sender, sender
from services.alerts.tables import Tables
from services.alerts.ticks import OffsetReader, TickGate, TickProducer
from services.alerts.transport import AlertsApp, entering, write_rows
from services.alerts.views import Views, partition_of
from services.common.config import ConfigError, Settings
from services.common.kafka import ensure_topics
from services.common.kafkaclients import KafkaClients
from services.common.workers import AlertsConfig

log = structlog.get_logger(__name__)

# The compacted topics read to their ends at every assignment, before the stream delivers them.
_READ_AHEAD = (topics.SUBSCRIPTIONS, topics.SILENCES, topics.ALERT_ACKS)

# Settings the embedded broker is known to work with; rebalances finish in a few seconds.
FAUST_SETTINGS: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_rebalance_timeout": 2.0,
    "broker_heartbeat_interval": 0.5,
    "producer_acks": -1,
    # faust produces each table write (its changelog record) on its own as soon as it is made:
    # without a linger every record became a produce request of its own (a profile of a worker
    # working off a backlog spent a fifth of its time writing them to the socket).
    "producer_linger": 0.005,
    "consumer_auto_offset_reset": "earliest",
    "web_enabled": False,
    "autodiscover": False,
}


def build_app(
    settings: Settings, config: AlertsConfig, partitions: int, kafka: KafkaClients
) -> AlertsApp:
    """The faust app: one agent over the co-partitioned topics, three tables, the tick timer."""
    bootstrap = kafka.bootstrap
    # One store per consumer group: a store's offsets belong to that group's changelogs.
    datadir = settings.data_dir / "alerts" / config.group
    datadir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
    app = AlertsApp(
        config.group,
        broker=f"kafka://{bootstrap}",
        store=config.store,
        datadir=str(datadir),
        topic_partitions=partitions,
        broker_commit_interval=config.commit_interval_s,
        **FAUST_SETTINGS,
    )
    app.offsets = OffsetReader(bootstrap, config.group)
    views = Views()
    tables = Tables(
        states=_table(
            app, "workflow-states", partitions, views.index_state,
            lambda key: partition_of(key, partitions),
        ),
        subscriptions=_table(
            app, "subscriptions", partitions, views.index_subscription, _suffix,
        ),
        costs=_table(app, "project-costs", partitions, views.index_cost, _suffix),
    )  # fmt: skip
    order = Order()
    gate = TickGate(lambda p: _start_offset(app.offsets, order, p))
    engine = Engine(
        settings, partitions, tables, views, sender(app), gate, dead_letter_sender(app),
        record_events=event_sender(app), write_rows=write_rows,
    )  # fmt: skip
    _wire(app, engine, kafka, config, order)
    return app


def _table(
    app: AlertsApp,
    name: str,
    partitions: int,
    index: Callable[[int, bytes, bytes | None], None],
    partition: Callable[[bytes], int],
) -> Any:
    """A table whose rows are indexed in the views from the store once recovery is complete: a
    persistent store replays only the changelog after its last flush, so the replay alone would
    not show every row."""
    table = app.Table(
        name,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
    )

    @table.on_recover
    async def reindex() -> None:
        held = {tp.partition for tp in app.assignor.assigned_actives()}
        count = 0
        for key, value in table.items():
            where = partition(key)
            if where in held:
                index(where, key, value)
                count += 1
        log.info("alerts.table_indexed", table=name, rows=count, partitions=sorted(held))

    return table


def _suffix(key: bytes) -> int:
    """The partition a `<id>/<partition>` table key belongs to."""
    return int(key.rpartition(b"/")[2])


async def _start_offset(reader: OffsetReader, order: Order, partition: int) -> int:
    """Where the partition's `executions` went on at the assignment: as read for the agent's
    order then, else from the broker."""
    known = order.starts.get((topics.EXECUTIONS, partition))
    if known is not None:
        return known
    tp = TopicPartition(topics.EXECUTIONS, partition)
    return (await reader.starts([tp]))[tp]


def source_topic(app: AlertsApp, partitions: int) -> Any:
    """The engine's input: the co-partitioned topics as raw bytes. faust's codecs would crash
    the agent on a record that is not UTF-8 JSON; the engine decodes with msgspec and skips
    (logs) what it cannot read."""
    return app.topic(
        *topics.CO_PARTITIONED,
        partitions=partitions,
        internal=False,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


def _wire(
    app: AlertsApp, engine: Engine, kafka: KafkaClients, config: AlertsConfig, order: Order
) -> None:
    partitions = engine.partitions
    source = source_topic(app, partitions)

    # `handle_batch` raises nothing but cancellation, so the crashing supervisor only ever stops
    # a worker whose agent is broken, never because of one record. Events are acknowledged (their
    # offsets become committable) only once their batch's effects are carried out: a worker
    # stopped or killed within a batch leaves the whole batch to be read again.
    @app.agent(source, concurrency=1, supervisor_strategy=CrashingSupervisor)
    async def evaluate(stream: Any) -> None:
        async for events in stream.noack_take(config.batch_max, within=config.batch_s):
            batch = order.admit(events, time.monotonic())
            if batch.taken:
                messages = [event.message for event in batch.taken]
                await engine.handle_batch(messages, entering(batch.taken))
            for event in (*batch.taken, *batch.settled):
                await stream.ack(event)
            for tp, offset in batch.rewind.items():
                try:
                    await app.consumer.seek(tp, offset)
                except KafkaError as exc:  # no longer assigned: a rebalance came first
                    log.warning("alerts.read_again_failed", partition=str(tp), error=repr(exc))

    ticks = TickProducer(kafka.producer, app.offsets, partitions)

    @app.timer(config.tick_s, on_leader=True)  # type: ignore[untyped-decorator] # bare Callable
    async def tick() -> None:
        try:
            await ticks.tick_once()
        except (KafkaError, OSError, TimeoutError) as exc:  # the next interval tries again
            log.warning("alerts.tick_failed", error=repr(exc))

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        tps: set[Any] = args[0] if args else kwargs.get("revoked", set())
        engine.views.forget({tp.partition for tp in tps if tp.topic == topics.EXECUTIONS})
        engine.gate.reset()
        order.revoke()

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        engine.gate.reset()
        tps: set[Any] = args[0] if args else kwargs.get("assigned", set())
        mine = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        # One line per rebalance, as the dispatcher logs: how an operator sees the group change.
        held = sorted(tp.partition for tp in mine if tp.topic == topics.EXECUTIONS)
        log.info("alerts.assigned", partitions=[f"{topics.EXECUTIONS}/{p}" for p in held])
        gapless = [tp for tp in mine if tp.topic in GAPLESS]
        try:
            starts = await app.offsets.starts(gapless)
        except (KafkaError, OSError, TimeoutError) as exc:  # the first records read decide
            log.warning("alerts.committed_offsets_not_read", error=repr(exc))
            order.assign(None)
        else:
            order.assign({(tp.topic, tp.partition): offset for tp, offset in starts.items()})
        wanted = [tp for tp in mine if tp.topic in _READ_AHEAD]
        try:
            records = await app.offsets.read(wanted)
        except (KafkaError, OSError, TimeoutError) as exc:  # the stream still delivers them
            log.warning("alerts.subscriptions_not_read_ahead", error=repr(exc))
            return
        for record in records:
            if record.topic == topics.SILENCES:
                engine.views.preload_silence(record.partition, record.key, record.value)
            elif record.topic == topics.ALERT_ACKS:
                engine.views.preload_ack(record.partition, record.key, record.value)
            else:
                engine.views.preload(record.partition, record.key, record.value)

    @app.on_before_shutdown.connect
    async def shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await ticks.stop()
        await app.offsets.stop()


async def prepare(settings: Settings) -> int:
    """Create missing topics; the partition count the co-partitioned topics share."""
    bootstrap = settings.kafka_bootstrap or ""
    await ensure_topics(bootstrap, settings.kafka_partitions)
    reader = OffsetReader(bootstrap)
    try:
        counts = await reader.partition_counts(topics.CO_PARTITIONED)
    finally:
        await reader.stop()
    if len(set(counts.values())) != 1:
        raise ConfigError(f"topics {sorted(counts)} must have one partition count, have {counts}")
    return next(iter(counts.values()))


def run_worker(settings: Settings, config: AlertsConfig, kafka: KafkaClients) -> int:
    """Run the engine in the foreground until SIGINT or SIGTERM (faust owns the event loop)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    partitions = loop.run_until_complete(prepare(settings))
    app = build_app(settings, config, partitions, kafka)
    # Logging stays as `configure_logging` set it, one stream in one format: faust would put its
    # own handler and format on the root logger, at its level, and print to stdout.
    worker = faust.Worker(
        app, loop=loop, quiet=True, redirect_stdouts=False, override_logging=False
    )
    # faust's progress spinner writes to stdout, and sets the root logger to DEBUG whenever the
    # level is WARNING or above, which makes every debug call of faust and aiokafka build a record.
    worker.spinner = None
    log.info("alerts.starting", group=config.group, partitions=partitions, pid=os.getpid())
    try:
        worker.execute_from_commandline()  # exits the process when the worker stops
    finally:
        log.info("alerts.stopped", pid=os.getpid())
    return 0

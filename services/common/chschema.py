"""The ClickHouse schema, as versioned migrations. Same DDL on chDB and on a ClickHouse server.

`executions` is slim and sorted for the gapless cursor `(ingest_ts, partition, offset)` within a
project; big blobs live in `execution_payloads`, read only for full details. Workflows and monthly
usage are kept by materialized views so that they follow every insert without a second writer.
Retention is a TTL on ingestion time with the plan's days stored per row, so backfilled history is
not dropped the moment it lands.

`delivery_attempts` (migration 2) holds one row per attempt to deliver a notification, sorted so
that a subscription's deliveries and their attempts are one range of the primary key; a replayed
attempt has the same key and collapses (ReplacingMergeTree, read with FINAL). A delivery is found by
id within a project through a bloom filter. Attempts are kept `DELIVERY_RETENTION_DAYS` after they
were made, whatever the plan.

Migration 3 serves `/runs` and `/workflows` without whole-project scans. `runs` holds one row per
started execution (version 0) and one per completed execution (version 1), kept by materialized
views and sorted newest-first-ready by `(project_id, started_at, execution_id, version)`, so a page
is a keyset read whose first row of each run is its latest state. Workflow counts and last times
come from aggregate projections of `executions` and `executions_started`: they live inside each
part, so they are written with the rows they summarise (a crash cannot split them) and follow the
TTL. Existing rows are backfilled by the migration itself.

Migration 4 holds alerts (contract section 6, v1.1). `alerts` has one row per event of an alert
episode, as the engine produced it on `alert-events` with the episode's figures after it; a
ReplacingMergeTree on the episode's `version` keeps the latest per (project, alert), read with
FINAL, so a replayed event collapses into its copy and the row is the alert's current state
without an aggregation at read time. Acknowledgements come from another producer (the API, on
`alert-acks`) and would lack every other column, so they are rows of their own in `alert_acks`,
joined at read time: an alert is acknowledged when an `alert_acks` row names it. Both are kept
`ALERT_RETENTION_DAYS` after the alert's latest event (acknowledgements twice as long, so that
one never disappears before its alert).

Migration 5 gives each execution its logs-page row in one column, `page_row`: the basic item's
fields (`files` only when it is short), the sorting key and the length of `files` as one JSON
array, computed by ClickHouse when the row is inserted (MATERIALIZED, so writers do not change)
and for existing parts by the migration. A page reads the sorting key and that one column instead
of thirteen: on chDB each column a query reads costs about 0.3 ms of its own, whatever its size,
which was most of a page's time beyond the key.
"""

_TTL = "TTL toDateTime(intDiv(ingest_ts, 1000000)) + toIntervalDay(retention_days)"

EXECUTIONS = f"""
CREATE TABLE IF NOT EXISTS executions (
    project_id LowCardinality(String),
    ingest_ts Int64 CODEC(Delta, ZSTD(1)),
    partition UInt16,
    offset UInt64 CODEC(Delta, ZSTD(1)),
    log_id String,
    execution_id String,
    workflow_id String,
    workflow_name String,
    workflow_description String CODEC(ZSTD(3)),
    folder_id String,
    trigger LowCardinality(String),
    level LowCardinality(String),
    status LowCardinality(String),
    started_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    ended_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    total_duration_ms UInt64 CODEC(T64, ZSTD(1)),
    cost_total Float64 CODEC(ZSTD(1)),
    cost_json String CODEC(ZSTD(3)),
    models Array(LowCardinality(String)),
    files String CODEC(ZSTD(3)),
    has_trace_spans UInt8,
    has_final_output UInt8,
    retention_days UInt16,
    INDEX ix_execution_id execution_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX ix_log_id log_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX ix_workflow_id workflow_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX ix_folder_id folder_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX ix_models models TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX ix_duration total_duration_ms TYPE minmax GRANULARITY 1,
    INDEX ix_cost cost_total TYPE minmax GRANULARITY 1,
    INDEX ix_started started_at TYPE minmax GRANULARITY 1,
    PROJECTION by_execution (
        SELECT project_id, execution_id, log_id, ingest_ts, partition, offset
        ORDER BY project_id, execution_id
    )
) ENGINE = MergeTree
ORDER BY (project_id, ingest_ts, partition, offset)
{_TTL}
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 4096
"""

PAYLOADS = f"""
CREATE TABLE IF NOT EXISTS execution_payloads (
    project_id LowCardinality(String),
    execution_id String,
    ingest_ts Int64,
    trace_spans String CODEC(ZSTD(3)),
    final_output String CODEC(ZSTD(3)),
    workflow_state String CODEC(ZSTD(3)),
    retention_days UInt16
) ENGINE = ReplacingMergeTree(ingest_ts)
ORDER BY (project_id, execution_id)
{_TTL}
SETTINGS non_replicated_deduplication_window = 10000
"""

STARTED = f"""
CREATE TABLE IF NOT EXISTS executions_started (
    project_id LowCardinality(String),
    execution_id String,
    workflow_id String,
    workflow_name String,
    folder_id String,
    trigger LowCardinality(String),
    mode LowCardinality(String),
    started_at DateTime64(3, 'UTC'),
    ingest_ts Int64,
    retention_days UInt16
) ENGINE = ReplacingMergeTree(ingest_ts)
ORDER BY (project_id, execution_id)
{_TTL}
SETTINGS non_replicated_deduplication_window = 10000
"""

WORKFLOW_STATS = """
CREATE TABLE IF NOT EXISTS workflow_stats (
    project_id LowCardinality(String),
    workflow_id String,
    execution_count SimpleAggregateFunction(sum, UInt64),
    last_execution_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree
ORDER BY (project_id, workflow_id)
"""

WORKFLOW_META = """
CREATE TABLE IF NOT EXISTS workflow_meta (
    project_id LowCardinality(String),
    workflow_id String,
    name String,
    description String,
    folder_id String,
    version Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, workflow_id)
"""

STATS_FROM_EXECUTIONS = """
CREATE MATERIALIZED VIEW IF NOT EXISTS workflow_stats_from_executions TO workflow_stats AS
SELECT project_id, workflow_id, toUInt64(count()) AS execution_count,
       max(ended_at) AS last_execution_at
FROM executions GROUP BY project_id, workflow_id
"""

STATS_FROM_STARTED = """
CREATE MATERIALIZED VIEW IF NOT EXISTS workflow_stats_from_started TO workflow_stats AS
SELECT project_id, workflow_id, toUInt64(0) AS execution_count,
       max(started_at) AS last_execution_at
FROM executions_started GROUP BY project_id, workflow_id
"""

META_FROM_EXECUTIONS = """
CREATE MATERIALIZED VIEW IF NOT EXISTS workflow_meta_from_executions TO workflow_meta AS
SELECT project_id, workflow_id, workflow_name AS name, workflow_description AS description,
       folder_id, ingest_ts AS version
FROM executions WHERE workflow_name != '' OR workflow_description != '' OR folder_id != ''
"""

META_FROM_STARTED = """
CREATE MATERIALIZED VIEW IF NOT EXISTS workflow_meta_from_started TO workflow_meta AS
SELECT project_id, workflow_id, workflow_name AS name, '' AS description, folder_id,
       ingest_ts AS version
FROM executions_started WHERE workflow_name != '' OR folder_id != ''
"""

USAGE = """
CREATE TABLE IF NOT EXISTS usage_monthly (
    project_id LowCardinality(String),
    month Date,
    cost SimpleAggregateFunction(sum, Float64),
    executions SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
ORDER BY (project_id, month)
"""

USAGE_FROM_EXECUTIONS = """
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_monthly_from_executions TO usage_monthly AS
SELECT project_id, toStartOfMonth(ended_at) AS month, sum(cost_total) AS cost,
       toUInt64(count()) AS executions
FROM executions GROUP BY project_id, month
"""

WATERMARKS = """
CREATE TABLE IF NOT EXISTS sink_watermarks (
    topic LowCardinality(String),
    partition UInt16,
    ts Int64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ts)
ORDER BY (topic, partition)
"""

DELIVERY_RETENTION_DAYS = 90

# Monthly partitions let the TTL drop whole parts; the version (attempted_at) keeps the latest copy
# of an attempt the dispatcher had to make again after a crash.
DELIVERY_ATTEMPTS = f"""
CREATE TABLE IF NOT EXISTS delivery_attempts (
    project_id LowCardinality(String),
    subscription_id String,
    delivery_id String,
    event_id String,
    event_type LowCardinality(String),
    notification_type LowCardinality(String),
    round Int64,
    attempt UInt16,
    outcome LowCardinality(String),
    attempted_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    duration_ms UInt32,
    target String,
    response_code Nullable(UInt16),
    response_body String CODEC(ZSTD(3)),
    error Nullable(String) CODEC(ZSTD(3)),
    next_attempt_at Nullable(DateTime64(3, 'UTC')),
    payload String CODEC(ZSTD(3)),
    INDEX ix_delivery_id delivery_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = ReplacingMergeTree(attempted_at)
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (project_id, subscription_id, delivery_id, round, attempt)
TTL toDateTime(attempted_at) + toIntervalDay({DELIVERY_RETENTION_DAYS})
SETTINGS non_replicated_deduplication_window = 10000
"""

RUNS = f"""
CREATE TABLE IF NOT EXISTS runs (
    project_id LowCardinality(String),
    started_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    execution_id String,
    version UInt8,
    workflow_id String,
    workflow_name String,
    status LowCardinality(String),
    trigger LowCardinality(String),
    mode LowCardinality(String),
    ended_at Nullable(DateTime64(3, 'UTC')),
    total_duration_ms Nullable(UInt64),
    ingest_ts Int64,
    retention_days UInt16,
    INDEX ix_workflow_id workflow_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplacingMergeTree
ORDER BY (project_id, started_at, execution_id, version)
{_TTL}
"""

_RUNS_STARTED = """
SELECT project_id, started_at, execution_id, toUInt8(0) AS version, workflow_id, workflow_name,
       'running' AS status, trigger, mode, CAST(NULL AS Nullable(DateTime64(3, 'UTC'))) AS ended_at,
       CAST(NULL AS Nullable(UInt64)) AS total_duration_ms, ingest_ts, retention_days
FROM executions_started
"""
_RUNS_COMPLETED = """
SELECT project_id, started_at, execution_id, toUInt8(1) AS version, workflow_id, workflow_name,
       status, trigger, '' AS mode, toNullable(ended_at) AS ended_at,
       toNullable(total_duration_ms) AS total_duration_ms, ingest_ts, retention_days
FROM executions
"""
RUNS_FROM_STARTED = (
    f"CREATE MATERIALIZED VIEW IF NOT EXISTS runs_from_started TO runs AS {_RUNS_STARTED}"
)
RUNS_FROM_EXECUTIONS = (
    f"CREATE MATERIALIZED VIEW IF NOT EXISTS runs_from_executions TO runs AS {_RUNS_COMPLETED}"
)
# A backfill that runs again after a crash only adds copies of the same keys (replaced on merge,
# skipped by readers, which take the first row of each run).
BACKFILL_RUNS = [f"INSERT INTO runs {_RUNS_STARTED}", f"INSERT INTO runs {_RUNS_COMPLETED}"]

WORKFLOW_PROJECTIONS = [
    "ALTER TABLE executions ADD PROJECTION IF NOT EXISTS workflow_totals (SELECT project_id, "
    "workflow_id, count(), max(ended_at) GROUP BY project_id, workflow_id)",
    "ALTER TABLE executions MATERIALIZE PROJECTION workflow_totals",
    # A replacing table keeps a projection only when told what to do with it on merges.
    "ALTER TABLE executions_started MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
    "ALTER TABLE executions_started ADD PROJECTION IF NOT EXISTS workflow_starts (SELECT "
    "project_id, workflow_id, max(started_at) GROUP BY project_id, workflow_id)",
    "ALTER TABLE executions_started MATERIALIZE PROJECTION workflow_starts",
]

ALERT_RETENTION_DAYS = 90

ALERTS = f"""
CREATE TABLE IF NOT EXISTS alerts (
    project_id LowCardinality(String),
    id String,
    subscription_id String,
    workflow_id String,
    rule LowCardinality(String),
    state LowCardinality(String),
    silenced UInt8,
    reason String CODEC(ZSTD(3)),
    observed Float64,
    threshold Float64,
    execution_id Nullable(String),
    fired_at DateTime64(3, 'UTC'),
    last_notified_at Nullable(DateTime64(3, 'UTC')),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC'),
    notification_count UInt32,
    version UInt32
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, id)
TTL toDateTime(updated_at) + toIntervalDay({ALERT_RETENTION_DAYS})
SETTINGS non_replicated_deduplication_window = 10000
"""

ALERT_ACKS = f"""
CREATE TABLE IF NOT EXISTS alert_acks (
    project_id LowCardinality(String),
    alert_id String,
    acknowledged_at DateTime64(3, 'UTC'),
    acknowledged_by String
) ENGINE = ReplacingMergeTree
ORDER BY (project_id, alert_id)
TTL toDateTime(acknowledged_at) + toIntervalDay({2 * ALERT_RETENTION_DAYS})
SETTINGS non_replicated_deduplication_window = 10000
"""

# `page_row` holds a `files` value of up to this many bytes (a longer one is '' there and read
# apart, see services.api.logrows); rows already written keep the bound they were written with.
PAGE_ROW_FILES_BYTES = 4096
_PAGE_ROW = (
    "toJSONString((log_id, workflow_id, execution_id, level, trigger, "
    "toUnixTimestamp64Milli(started_at), toUnixTimestamp64Milli(ended_at), total_duration_ms, "
    f"cost_total, if(length(files) <= {PAGE_ROW_FILES_BYTES}, files, ''), ingest_ts, partition, "
    "offset, length(files)))"
)
PAGE_ROW = [
    "ALTER TABLE executions ADD COLUMN IF NOT EXISTS page_row String "
    f"MATERIALIZED {_PAGE_ROW} CODEC(ZSTD(1))",
    "ALTER TABLE executions MATERIALIZE COLUMN page_row",
]

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "executions, payloads, runs, workflows, usage, watermarks",
        [
            EXECUTIONS,
            PAYLOADS,
            STARTED,
            WORKFLOW_STATS,
            WORKFLOW_META,
            STATS_FROM_EXECUTIONS,
            STATS_FROM_STARTED,
            META_FROM_EXECUTIONS,
            META_FROM_STARTED,
            USAGE,
            USAGE_FROM_EXECUTIONS,
            WATERMARKS,
        ],
    ),
    (2, "delivery attempts", [DELIVERY_ATTEMPTS]),
    (
        3,
        "runs by start time, workflow projections",
        [RUNS, RUNS_FROM_STARTED, RUNS_FROM_EXECUTIONS, *BACKFILL_RUNS, *WORKFLOW_PROJECTIONS],
    ),
    (4, "alerts and their acknowledgements", [ALERTS, ALERT_ACKS]),
    (5, "a logs page's row in one column", PAGE_ROW),
]

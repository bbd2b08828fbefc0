"""The worker services' own knobs (log sink, alert engine, dispatcher), held by `Settings`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SinkConfig:
    """Flush thresholds, concurrency and consumer group of the log sink."""

    flush_rows: int = 20_000
    flush_bytes: int = 32 * 1024 * 1024
    flush_s: float = 0.5
    max_inflight: int = 2
    watermark_every_s: float = 0.2
    quiet_watermark_every_s: float = 5.0
    group_id: str = "logsink"
    # Prefixes every insert deduplication token: a broker whose offsets start again at 0 (the
    # embedded one, restarted) must get a new scope, or its batches would repeat old tokens and
    # ClickHouse would silently drop them as duplicates.
    dedup_scope: str = ""


@dataclass(frozen=True)
class AlertsConfig:
    """The alert engine's consumer group (= faust app id), table store, tick interval and
    batches (at most `batch_max` records, or what `batch_s` gathers)."""

    group: str = "codecourier-alerts"
    store: str = "rocksdb://"
    tick_s: float = 15.0
    commit_interval_s: float = 1.0
    batch_max: int = 500
    batch_s: float = 0.01


@dataclass(frozen=True)
class DispatcherConfig:
    """The dispatcher's consumer group, lanes, timeouts and start-up reading."""

    group: str = "codecourier-dispatcher"
    in_flight_per_lane: int = 16
    queued_per_lane: int = 2000
    commit_interval_s: float = 0.2
    timeout_s: float = 30.0
    drain_s: float = 5.0
    journal_tail: int = 10_000  # delivery-log records per partition read back (start, assignment)
    recording: int = 4000  # attempts answered and not yet on delivery-log, at most
    lane_stall_s: float = 1.0  # a full lane with no attempt ended for this long is stalled

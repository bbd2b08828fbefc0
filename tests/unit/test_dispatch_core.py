"""The dispatcher's decisions, without a broker: every branch of `decide` and `conclude`."""

import copy
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import topics
from schemas.destinations import EmailDestination, WebhookDestination
from schemas.notifications import NotificationRecord
from schemas.payloads import DeliveryData, DeliveryPayload, Links
from services.dispatcher import retry
from services.dispatcher.channels.base import Result
from services.dispatcher.decision import (
    INTERRUPTED,
    Action,
    Attempted,
    Claim,
    DeadLetter,
    Deliver,
    Finish,
    Head,
    Log,
    Schedule,
    State,
    Wait,
    conclude,
    decide,
)
from services.dispatcher.journal import STARTED, Done, Journal
from services.dispatcher.progress import Room
from services.dispatcher.records import lane_of

NOW = 1_800_000_000_000
DELAYS = retry.Schedule((5, 15, 60, 180, 600))
LANE = "webhook https://hooks.example.com"
TIER_1, TIER_3 = topics.retry_tier(1), topics.retry_tier(3)


class Rooms:
    """Lanes as decisions see them: a fixed room per lane, free unless told."""

    def __init__(self, **rooms: Room) -> None:
        self.rooms = rooms

    def room(self, lane: str) -> Room:
        return self.rooms.get(lane.split(" ")[0], "free")


PAYLOAD = DeliveryPayload(
    id="evt_1", type="workflow.execution.completed", timestamp=1,
    data=DeliveryData(workflowId="wf"), links=Links(),
)  # fmt: skip


def notification(**changes: Any) -> NotificationRecord:
    record = NotificationRecord(
        v=1, deliveryId="dlv_1", eventId="evt_1", subscriptionId="ntf_1", projectId="prj_1",
        notificationType="webhook", destination=WebhookDestination(url="https://hooks.example.com/x?t=1"),
        payload=PAYLOAD, createdAtMs=1,
    )  # fmt: skip
    return msgspec.structs.replace(record, **changes)


def state(journal: Journal | None = None, seed: int = 1, **rooms: Room) -> State:
    return State(DELAYS, journal or Journal(), Rooms(**rooms), random.Random(seed))


def head(record: NotificationRecord | Exception, topic: str = topics.NOTIFICATIONS,
         timestamp_ms: int = NOW) -> Head:  # fmt: skip
    return Head(topic, timestamp_ms, record)


def key(record: NotificationRecord) -> tuple[str, int, int]:
    return (record.deliveryId, record.round, record.attempt)


# ---- decide: records off `notifications` ---------------------------------------------------


def test_a_record_that_is_not_a_notification_is_dead_lettered_with_why() -> None:
    error = msgspec.DecodeError("not JSON")
    assert decide(head(error), NOW, state()) == [DeadLetter(error), Finish()]


def test_a_new_attempt_is_claimed_and_handed_to_its_lane() -> None:
    record = notification()
    actions = decide(head(record), NOW, state())
    assert actions == [Claim(key(record)), Deliver(record, LANE)]


def test_lanes_are_per_origin_for_webhooks_and_per_subscription_otherwise() -> None:
    hook = notification(
        destination=WebhookDestination(url="https://user:pw@hooks.example.com:8443/a")
    )
    mail = notification(
        notificationType="email", destination=EmailDestination(recipients=["a@b.c"])
    )
    assert decide(head(hook), NOW, state())[1] == Deliver(
        hook, "webhook https://hooks.example.com:8443"
    )
    assert decide(head(mail), NOW, state())[1] == Deliver(mail, "email ntf_1")


def test_a_busy_lane_keeps_the_record_waiting_unclaimed() -> None:
    assert decide(head(notification()), NOW, state(webhook="busy")) == [Wait()]


def test_a_stalled_lane_puts_the_attempt_off_on_the_first_tier_with_its_number() -> None:
    record = notification(attempt=2)
    (put_off, finish) = decide(head(record), NOW, state(webhook="stalled"))
    assert put_off == Schedule(msgspec.structs.replace(record, dueAtMs=NOW + 5000), 1, "defer")
    assert finish == Finish()


def test_a_copy_of_a_record_being_worked_on_is_finished_without_an_attempt() -> None:
    journal = Journal()
    journal.claim(key(notification()))
    assert decide(head(notification()), NOW, state(journal)) == [Finish()]


def test_an_attempt_ended_before_a_restart_is_not_made_again() -> None:
    journal = Journal()
    journal.done[key(notification())] = Done("delivered", None)
    assert decide(head(notification()), NOW, state(journal)) == [
        Claim(key(notification())),
        Finish(),
    ]


def test_an_attempt_ended_retrying_before_a_restart_has_its_retry_put_on_a_tier_again() -> None:
    record = notification()
    journal = Journal()
    journal.done[key(record)] = Done("retrying", NOW + 20_000)
    actions = decide(head(record), NOW, state(journal))
    again = msgspec.structs.replace(record, attempt=2, dueAtMs=NOW + 20_000)
    assert actions == [Claim(key(record)), Schedule(again, 2, "retry"), Finish()]


def test_an_attempt_left_in_flight_by_a_stop_counts_as_made_and_failed() -> None:
    record = notification()
    journal = Journal()
    journal.done[key(record)] = Done(STARTED, None)
    claim, log, again, finish = decide(head(record), NOW, state(journal, seed=3))
    assert isinstance(log, Log) and isinstance(again, Schedule)
    assert (claim, finish) == (Claim(key(record)), Finish())
    entry = log.entry
    assert (entry.outcome, entry.error, entry.attempt) == ("retrying", INTERRUPTED, 1)
    assert (entry.attemptedAtMs, entry.durationMs, entry.responseCode) == (NOW, 0, None)
    assert entry.nextAttemptAtMs is not None
    assert NOW + 5000 <= entry.nextAttemptAtMs <= NOW + 5000 * (1 + retry.JITTER)
    assert again == Schedule(
        msgspec.structs.replace(record, attempt=2, dueAtMs=entry.nextAttemptAtMs), 1, "retry"
    )


def test_the_last_attempt_left_in_flight_fails_for_good() -> None:
    record = notification(attempt=DELAYS.max_attempts)
    journal = Journal()
    journal.done[key(record)] = Done(STARTED, None)
    claim, log, finish = decide(head(record), NOW, state(journal))
    assert (claim, finish) == (Claim(key(record)), Finish())
    assert isinstance(log, Log) and log.entry.outcome == "failed"
    assert log.entry.nextAttemptAtMs is None


@pytest.mark.parametrize(
    "destination",
    [WebhookDestination(url="http://[::1/x"), WebhookDestination(url="http://[not-an-address]/")],
)
def test_a_record_without_a_lane_is_dead_lettered_before_any_claim(
    destination: WebhookDestination,
) -> None:
    dead, finish = decide(head(notification(destination=destination)), NOW, state())
    assert isinstance(dead, DeadLetter) and isinstance(dead.error, ValueError)
    assert finish == Finish()


# ---- decide: records off a retry tier ------------------------------------------------------


def test_a_tier_head_waits_until_it_is_due() -> None:
    record = notification(attempt=2, dueAtMs=NOW + 3000)
    assert decide(head(record, TIER_1, NOW - 2000), NOW, state()) == [Wait(NOW + 3000)]


def test_a_tier_head_due_after_the_tiers_own_wait_waits_for_that_then_hops() -> None:
    record = notification(attempt=2, dueAtMs=NOW + 3_600_000)  # a Retry-After of an hour
    enqueued = NOW - 10_000
    release = enqueued + int(60 * (1 + retry.JITTER) * 1000)  # tier 3 holds a record 60 s + jitter
    assert decide(head(record, TIER_3, enqueued), NOW, state()) == [Wait(release)]
    assert decide(head(record, TIER_3, enqueued), release - 1, state()) == [Wait(release)]
    later = release
    remaining_s = (record.dueAtMs - later) / 1000
    assert decide(head(record, TIER_3, enqueued), later, state()) == [
        Schedule(record, retry.tier_for(DELAYS, remaining_s), "hop"), Finish()
    ]  # fmt: skip


def test_a_tier_record_without_a_broker_timestamp_counts_as_enqueued_now() -> None:
    record = notification(attempt=2, dueAtMs=NOW + 60_000)
    assert decide(head(record, TIER_1, -1), NOW, state()) == [Wait(NOW + int(5 * 1.1 * 1000))]


def test_a_due_tier_record_is_attempted_like_a_new_one_and_not_a_moment_before() -> None:
    record = notification(attempt=3, dueAtMs=NOW)
    assert decide(head(record, TIER_1), NOW, state()) == [Claim(key(record)), Deliver(record, LANE)]
    assert decide(head(record, TIER_1), NOW - 1, state()) == [Wait(NOW)]


def test_a_record_that_makes_the_decision_raise_is_dead_lettered() -> None:
    record = notification(attempt=2, dueAtMs=NOW + 1000)
    actions = decide(head(record, topics.retry_tier(9)), NOW, state())  # a tier past the schedule
    assert [type(a) for a in actions] == [DeadLetter, Finish]


# ---- conclude ------------------------------------------------------------------------------


def attempted(record: NotificationRecord, result: Result) -> Attempted:
    return Attempted(record, result, started_ms=NOW - 120, duration_ms=120)


def test_a_delivery_is_logged_and_finished() -> None:
    record = notification()
    result = Result(delivered=True, status=200, body="ok")
    log, finish = conclude(attempted(record, result), NOW, state())
    assert isinstance(log, Log) and finish == Finish()
    entry = log.entry
    assert (entry.outcome, entry.responseCode, entry.responseBody) == ("delivered", 200, "ok")
    assert (entry.attemptedAtMs, entry.durationMs, entry.nextAttemptAtMs) == (NOW - 120, 120, None)
    assert entry.target == "https://hooks.example.com"  # no query string
    assert msgspec.json.decode(entry.payload, type=DeliveryPayload) == record.payload  # kept


def test_a_final_failure_is_logged_without_a_retry() -> None:
    result = Result(delivered=False, status=400, error="HTTP 400")
    log, finish = conclude(attempted(notification(attempt=2), result), NOW, state())
    assert isinstance(log, Log) and log.entry.outcome == "failed"
    assert bytes(log.entry.payload) == b"null"  # only the first attempt carries the payload
    assert finish == Finish()


def test_a_retryable_failure_is_logged_then_its_next_attempt_scheduled() -> None:
    record = notification(attempt=2)
    result = Result(delivered=False, retryable=True, status=503)
    log, again, finish = conclude(attempted(record, result), NOW, state(seed=7))
    assert isinstance(log, Log) and isinstance(again, Schedule) and finish == Finish()
    due = log.entry.nextAttemptAtMs
    assert log.entry.outcome == "retrying" and due is not None
    assert NOW + 15_000 <= due <= NOW + 15_000 * (1 + retry.JITTER)
    assert again == Schedule(msgspec.structs.replace(record, attempt=3, dueAtMs=due), 2, "retry")


def test_a_longer_retry_after_sets_the_due_time_and_the_tier() -> None:
    result = Result(delivered=False, retryable=True, status=429, retry_after_s=120)
    _, again, _ = conclude(attempted(notification(), result), NOW, state())
    assert again == Schedule(notification(attempt=2, dueAtMs=NOW + 120_000), 3, "retry")


def test_the_last_attempt_fails_for_good_even_when_retryable() -> None:
    record = notification(attempt=DELAYS.max_attempts)
    result = Result(delivered=False, retryable=True, status=503)
    log, finish = conclude(attempted(record, result), NOW, state())
    assert isinstance(log, Log) and log.entry.outcome == "failed" and finish == Finish()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"destination": WebhookDestination(url="http://127.0.0.1:99999/x")},
            ValueError,
        ),  # no port that big
        ({"attempt": -7}, IndexError),  # a hand-made tier record
    ],
)
def test_an_attempt_the_log_cannot_describe_is_dead_lettered(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    result = Result(delivered=False, retryable=True, status=503)
    dead, finish = conclude(attempted(notification(**changes), result), NOW, state())
    assert isinstance(dead, DeadLetter) and isinstance(dead.error, error)
    assert finish == Finish()


# ---- properties over any input -------------------------------------------------------------

rooms: st.SearchStrategy[Room] = st.sampled_from(["free", "busy", "stalled"])
journal_states = st.sampled_from([None, "claimed", STARTED, "delivered", "failed", "retrying"])


@st.composite
def heads(draw: st.DrawFn) -> tuple[Head, Journal, Room]:
    """A head record from any topic, due any time, and what the journal knows of it."""
    record = notification(
        attempt=draw(st.integers(1, DELAYS.max_attempts)),
        round=draw(st.sampled_from([0, NOW - 10**6])),
        dueAtMs=draw(st.integers(NOW - 10**7, NOW + 10**7) | st.just(0)),
        notificationType=draw(st.sampled_from(["webhook", "email", "slack"])),
    )
    topic = draw(st.sampled_from([topics.NOTIFICATIONS, *DELAYS.tiers()]))
    journal = Journal()
    known = draw(journal_states)
    if known == "claimed":
        journal.claim(key(record))
    elif known is not None:
        due = draw(st.integers(NOW - 10**6, NOW + 10**7)) if known == "retrying" else None
        journal.done[key(record)] = Done(known, due)
    timestamp = draw(st.integers(NOW - 10**7, NOW) | st.just(-1))
    return Head(topic, timestamp, record), journal, draw(rooms)


def check_schedule(action: Schedule, record: NotificationRecord, now_ms: int) -> None:
    """A record put on a tier is the same delivery, on the tier for its wait, never due late."""
    assert action.record.deliveryId == record.deliveryId
    assert 1 <= action.tier <= len(DELAYS.delays)
    wait_s = max(0.0, (action.record.dueAtMs - now_ms) / 1000)
    assert action.tier == retry.tier_for(DELAYS, wait_s)
    if action.reason == "retry":
        assert action.record.attempt == record.attempt + 1
    else:
        assert action.record.attempt == record.attempt
        assert action.record.dueAtMs > now_ms


@given(heads(), st.integers(NOW - 10**6, NOW + 10**7))
def test_every_decision_waits_delivers_or_finishes_and_reads_state_only(
    case: tuple[Head, Journal, Room], now_ms: int
) -> None:
    first, journal, room = case
    lanes = Rooms(webhook=room, email=room, slack=room)
    before = (copy.deepcopy(journal.done), set(journal.claimed))
    actions = decide(first, now_ms, State(DELAYS, journal, lanes, random.Random(0)))
    assert (journal.done, journal.claimed) == before  # decisions only read the journal
    record = first.record
    assert isinstance(record, NotificationRecord)
    kinds = [type(a) for a in actions]
    if kinds == [Wait]:
        (wait,) = actions
        assert isinstance(wait, Wait)
        assert wait.until_ms is None or wait.until_ms > now_ms
        return
    if Deliver in kinds:
        assert actions == [Claim(key(record)), Deliver(record, lane_of(record))]
        assert retry.tier_number(first.topic) is None or record.dueAtMs <= now_ms  # not early
        return
    assert kinds[-1] is Finish and Wait not in kinds
    assert Claim not in kinds[1:]  # a claim, if any, comes first
    for action in actions:
        if isinstance(action, Schedule):
            check_schedule(action, record, now_ms)
        if isinstance(action, Schedule) and action.reason == "hop":  # the tier held it its time
            enqueued = first.timestamp_ms if first.timestamp_ms > 0 else now_ms
            tier = retry.tier_number(first.topic)
            assert tier is not None
            assert retry.release_at_ms(DELAYS, tier, enqueued, record.dueAtMs) <= now_ms


@given(
    st.integers(1, DELAYS.max_attempts),
    st.booleans(),
    st.booleans(),
    st.none() | st.floats(0, 10_000),
    st.integers(0, 2**31),
)
def test_every_conclusion_logs_the_attempt_and_retries_only_while_attempts_are_left(
    attempt: int, delivered: bool, retryable: bool, retry_after_s: float | None, seed: int
) -> None:
    record = notification(attempt=attempt)
    result = Result(delivered=delivered, retryable=retryable, retry_after_s=retry_after_s)
    actions: list[Action] = conclude(attempted(record, result), NOW, state(seed=seed))
    log, *rest = actions
    assert isinstance(log, Log) and rest[-1] == Finish()
    entry = log.entry
    retries = [a for a in rest if isinstance(a, Schedule)]
    if delivered:
        assert entry.outcome == "delivered" and not retries
    elif retryable and attempt < DELAYS.max_attempts:
        (again,) = retries
        assert entry.outcome == "retrying" and again.record.dueAtMs == entry.nextAttemptAtMs
        wait_s = (again.record.dueAtMs - NOW) / 1000
        assert DELAYS.delays[attempt - 1] <= wait_s <= 3600
        check_schedule(again, record, NOW)
    else:
        assert entry.outcome == "failed" and not retries and entry.nextAttemptAtMs is None

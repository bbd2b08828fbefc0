"""The alert engine takes each record of `executions` and `ticks` once per assignment, in log
order, whatever faust's fetcher hands on around a rebalance (records again, records fetched
before a seek, records missing)."""

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from schemas import topics
from services.alerts.order import Order


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> tuple[str, int]:
        return self.topic, self.partition


@dataclass(frozen=True)
class Event:
    message: Message


def events(*offsets: int, topic: str = topics.EXECUTIONS, partition: int = 0) -> list[Event]:
    return [Event(Message(topic, partition, offset)) for offset in offsets]


def offsets(found: list[Event]) -> list[int]:
    return [event.message.offset for event in found]


EX0 = (topics.EXECUTIONS, 0)


def test_records_from_the_committed_offset_on_are_taken_in_order() -> None:
    order = Order()
    order.assign({EX0: 5})
    batch = order.admit(events(5, 6, 7), now=0)
    assert offsets(batch.taken) == [5, 6, 7] and not batch.settled and not batch.rewind
    assert offsets(order.admit(events(8), now=0).taken) == [8]
    assert order.starts == {EX0: 5}  # where the assignment began, for the tick gate


def test_records_read_again_are_acknowledged_not_handled() -> None:
    order = Order()
    order.assign({EX0: 5})
    order.admit(events(5, 6), now=0)
    batch = order.admit(events(3, 5, 6, 7), now=0)
    assert offsets(batch.settled) == [3, 5, 6] and offsets(batch.taken) == [7]


def test_a_record_missing_stops_the_partition_and_reads_it_again_from_there() -> None:
    order = Order(rewind_s=1.0)
    order.assign({EX0: 5})
    batch = order.admit(events(5, 7, 8), now=0)  # 6 was skipped by the fetcher
    assert offsets(batch.taken) == [5] and not batch.settled
    assert batch.rewind == {EX0: 6}
    # the records fetched before the rewind still come: skipped, and no second rewind yet
    batch = order.admit(events(9), now=0.5)
    assert not batch.taken and not batch.rewind
    # read again from 6: taken in order, the copies of 5 acknowledged
    batch = order.admit(events(5, 6, 7, 8, 9), now=0.6)
    assert offsets(batch.settled) == [5] and offsets(batch.taken) == [6, 7, 8, 9]
    assert not batch.rewind


def test_the_rewind_is_asked_again_when_the_record_does_not_come() -> None:
    order = Order(rewind_s=1.0)
    order.assign({EX0: 0})
    assert order.admit(events(2), now=0).rewind == {EX0: 0}
    assert not order.admit(events(3), now=0.9).rewind
    assert order.admit(events(4), now=1.0).rewind == {EX0: 0}


def test_records_fetched_before_a_seek_then_the_records_again_need_no_rewind() -> None:
    order = Order()
    order.assign({EX0: 5})
    batch = order.admit(events(8, 9, 5, 6, 7, 8, 9), now=0)
    assert offsets(batch.taken) == [5, 6, 7, 8, 9] and not batch.rewind


def test_after_a_revocation_records_of_the_old_partitions_are_left_alone() -> None:
    order = Order()
    order.assign({EX0: 0})
    order.revoke()
    batch = order.admit(events(0, 1), now=0)
    assert not batch.taken and not batch.settled and not batch.rewind


def test_partitions_are_kept_apart_and_compacted_topics_pass_as_they_come() -> None:
    order = Order()
    order.assign({EX0: 0, (topics.EXECUTIONS, 1): 10, (topics.TICKS, 0): 3})
    mixed = [
        *events(0), *events(10, partition=1), *events(3, topic=topics.TICKS),
        *events(40, 7, topic=topics.SUBSCRIPTIONS), *events(1), *events(12, partition=1),
    ]  # fmt: skip
    batch = order.admit(mixed, now=0)
    assert [(e.message.topic, e.message.partition, e.message.offset) for e in batch.taken] == [
        (topics.EXECUTIONS, 0, 0), (topics.EXECUTIONS, 1, 10), (topics.TICKS, 0, 3),
        (topics.SUBSCRIPTIONS, 0, 40), (topics.SUBSCRIPTIONS, 0, 7), (topics.EXECUTIONS, 0, 1),
    ]  # fmt: skip
    assert batch.rewind == {(topics.EXECUTIONS, 1): 11}


def test_without_committed_offsets_the_first_record_read_is_the_start() -> None:
    order = Order()
    order.assign(None)
    assert offsets(order.admit(events(42, 43), now=0).taken) == [42, 43]
    assert order.admit(events(45), now=0).rewind == {EX0: 44}


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, int, list[list[int]]]:
    """A log of `end` records read from `start` as a fetcher around rebalances hands them on:
    runs from any offset (records again, records fetched before a seek), some records dropped,
    split into batches."""
    start = draw(st.integers(0, 20))
    end = start + draw(st.integers(0, 30))
    handed: list[int] = []
    for _ in range(draw(st.integers(0, 6))):
        first = draw(st.integers(max(0, start - 5), end + 1))
        run = list(range(first, min(end, first + draw(st.integers(0, 15)))))
        handed += [o for o in run if not draw(st.booleans()) or o % 7]
    handed += list(range(start, end))  # after the last rewind the log is read through
    cuts = sorted(draw(st.lists(st.integers(0, len(handed)), max_size=5)))
    batches = [handed[a:b] for a, b in zip([0, *cuts], [*cuts, len(handed)], strict=True)]
    return start, end, batches


@given(deliveries())
def test_whatever_the_fetcher_hands_on_each_record_is_taken_once_in_order(
    case: tuple[int, int, list[list[int]]],
) -> None:
    start, end, batches = case
    order = Order(rewind_s=0)
    order.assign({EX0: start})
    taken: list[int] = []
    for batch in batches:
        admitted = order.admit(events(*batch), now=0)
        taken += offsets(admitted.taken)
        assert all(o < start + len(taken) for o in offsets(admitted.settled))
    assert taken == list(range(start, end))

"""The engine's bookkeeping of workflow values and project cost rows, and month-to-date cost.

A watched workflow counts its cost in its own `Stored` value; executions of a workflow without
state count into its project's `ProjectCost` row on the partition, once each, and a workflow
that loses its state (no subscription covers it any more, or it is evicted over the per-project
cap) has its cost folded into that row. Every write goes to the table and its view together.
"""

from decimal import Decimal

import msgspec
import structlog
from prometheus_client import Counter

from schemas.events import ExecutionCompleted
from services.alerts.payload import Extras
from services.alerts.rules import facts_of
from services.alerts.state import (
    ExecutionFacts,
    WorkflowState,
    digests_add,
    digests_have,
    seen_digest,
)
from services.alerts.tables import (
    ProjectCost,
    Stored,
    Tables,
    cost_key,
    decode_cost,
    decode_head,
    decode_stored,
)
from services.alerts.views import Views, split_key
from services.common.clock import iso_ms
from services.common.config import DEFAULT_PLANS, PlanLimits, Settings

log = structlog.get_logger(__name__)

KEPT_MONTHS = 2
# Workflows whose latest written value is kept decoded (see `Ledger`), and the least size of one.
WRITTEN_KEPT = 256
WRITTEN_MIN_BYTES = 4096
EVICTED = Counter("cc_alerts_evicted_workflows", "Workflow states dropped over the per-project cap")

_encode = msgspec.json.Encoder().encode

Pending = tuple[int, bytes, dict[str, Decimal]]  # (partition, key, cost) not yet written back


class Ledger:
    """Reads and writes workflow values and project cost rows, keeping the views in step."""

    def __init__(self, settings: Settings, tables: Tables, views: Views) -> None:
        self.settings = settings
        self.tables = tables
        self.views = views
        self.capped: set[str] = set()
        # The latest large values stored (of busy workflows, WRITTEN_KEPT at most), with the
        # objects they encode: a `load` that finds that very value in the table takes the object
        # instead of decoding it again (some 0.16 ms for a workflow that runs every minute). It
        # is handed on once: an object changed and not stored again is never handed on. Small
        # values are not kept: they decode in a few microseconds, and keeping every value of a
        # batch cost the engine a tenth to a quarter of its time over 10,000 new workflows.
        self._written: dict[bytes, tuple[bytes, Stored]] = {}
        self.written_min_bytes = WRITTEN_MIN_BYTES

    def load(self, key: bytes, workflow_id: str) -> Stored:
        """A workflow's stored value (a fresh one for a new workflow), the caller's to change."""
        raw = self.tables.states.get(key)
        if raw is None:
            return Stored({}, self.views.plans.get(split_key(key)[0], "free"),
                          WorkflowState(workflow_id=workflow_id))  # fmt: skip
        written = self._written.pop(key, None)
        if written is not None and written[0] is raw:
            return written[1]
        return decode_stored(raw)

    def store(self, partition: int, key: bytes, stored: Stored) -> None:
        """Write a workflow's value back; drop the project's least recent ones over the cap
        (their cost goes into the project's row)."""
        raw = _encode(stored)
        self.tables.states[key] = raw
        self._written.pop(key, None)
        if len(raw) >= self.written_min_bytes:
            self._written[key] = (raw, stored)
            if len(self._written) > WRITTEN_KEPT:
                del self._written[next(iter(self._written))]
        self.views.set_wf_cost(partition, key, dict(stored.cost))
        evicted = self.views.add_key(partition, key)
        if evicted:
            project = split_key(key)[0]
            row = self.cost_row(partition, project, stored.plan)
            for old in evicted:
                self.fold(partition, old, row)
            self.store_cost(partition, project, row)
            EVICTED.inc(len(evicted))
            if project not in self.capped:  # once per project: the counter tells the rest
                self.capped.add(project)
                log.warning("alerts.workflows_capped", project=project, partition=partition,
                            cap=self.views.max_workflows)  # fmt: skip

    def count_untracked(
        self, partition: int, project: str, plan: str, events: list[ExecutionCompleted], key: bytes
    ) -> None:
        """Count the cost of executions of a workflow without state, each once; a state it had
        is dropped and its cost taken into the project's row."""
        row = self.cost_row(partition, project, plan)
        fresh = self.fold(partition, key, row)
        for event in events:
            digest = seen_digest(event.executionId)
            if digests_have(row.seen, digest):
                continue
            row.seen = digests_add(row.seen, digest)
            add_cost(row.cost, facts_of(event))
            fresh = True
        if fresh:
            self.store_cost(partition, project, row)

    def fold(self, partition: int, key: bytes, row: ProjectCost) -> bool:
        """Drop a workflow's state, adding its cost into its project's row; whether it had one."""
        self._written.pop(key, None)
        raw = self.tables.states.pop(key, None)
        if raw is None:
            return False
        self.views.discard_key(partition, key)
        for month, amount in decode_head(raw).cost.items():
            row.cost[month] = row.cost.get(month, Decimal(0)) + amount
        return True

    def cost_row(self, partition: int, project: str, plan: str) -> ProjectCost:
        """A copy of a project's cost row on a partition (new for a new project), to change and
        write back: the views change only with the table."""
        row = self.views.costs[partition].get(project)
        if row is None:
            raw = self.tables.costs.get(cost_key(project, partition))
            return ProjectCost({}, plan, b"") if raw is None else decode_cost(raw)
        return ProjectCost(dict(row.cost), plan, row.seen)

    def store_cost(self, partition: int, project: str, row: ProjectCost) -> None:
        """Write a project's cost row back."""
        self.tables.costs[cost_key(project, partition)] = _encode(row)
        self.views.costs[partition][project] = row

    def extras(self, project: str, at_ms: int, pending: Pending | None = None) -> Extras:
        """The project's plan limits and month-to-date cost at `at_ms` (with a workflow's cost
        not yet written back)."""
        plan = self.views.plans.get(project, "free")
        cost = self.views.period_cost(project, iso_ms(at_ms)[:7], pending)
        return Extras(plan, self.limits(plan), cost)

    def limits(self, plan: str) -> PlanLimits:
        """A plan's limits; an unknown plan name gets the free plan's."""
        try:
            return self.settings.plan(plan)
        except KeyError:
            return DEFAULT_PLANS["free"]


def add_cost(cost: dict[str, Decimal], facts: ExecutionFacts) -> None:
    """Count an execution's cost into its month; months before the previous are dropped."""
    month = iso_ms(facts.ended_ms)[:7]
    cost[month] = cost.get(month, Decimal(0)) + (facts.cost or Decimal(0))
    for old in sorted(cost)[:-KEPT_MONTHS]:
        del cost[old]

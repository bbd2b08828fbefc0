"""The engine's durable state: the tables and the values stored in them.

`Tables` are plain mappings (faust tables in the worker, dicts in benchmarks) of bytes to bytes;
`Stored` and `ProjectCost` are what their values decode to.
"""

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from services.alerts.state import WorkflowState, digests_of


@dataclass(frozen=True)
class Tables:
    """The durable state: faust tables in the worker, dicts in benchmarks."""

    states: MutableMapping[bytes, bytes]
    subscriptions: MutableMapping[bytes, bytes]
    costs: MutableMapping[bytes, bytes] = field(default_factory=dict)


class Stored(msgspec.Struct, array_like=True):
    """A `workflow-states` value: the workflow's cost per month, its plan and its rule state.

    A watched workflow counts its cost here, in the row it writes anyway (one table write per
    execution); a workflow without state counts into its project's `ProjectCost` row, which
    also takes a workflow's cost when it loses its state.
    """

    cost: dict[str, Decimal]
    plan: str
    state: WorkflowState


class StoredHead(msgspec.Struct, array_like=True):
    """The leading fields of a `Stored` value, decoded without the rule state."""

    cost: dict[str, Decimal]
    plan: str


class ProjectCost(msgspec.Struct, array_like=True):
    """A `project-costs` value (key `<project>/<partition>`): the project's cost per month on
    that partition, its plan, and the latest executions counted without a workflow state (whose
    own seen ids would otherwise keep a resent execution from counting twice), as 8-byte digests
    laid end to end: the row is rewritten on every such execution, so its size is what the
    changelog carries per execution (8 KB at most instead of some 40 KB of ids)."""

    cost: dict[str, Decimal]
    plan: str
    seen: bytes


decode_stored = msgspec.json.Decoder(Stored).decode
decode_head = msgspec.json.Decoder(StoredHead).decode
_project_cost = msgspec.json.Decoder(ProjectCost)
_project_cost_ids = msgspec.json.Decoder(tuple[dict[str, Decimal], str, list[str]])


def decode_cost(raw: bytes) -> ProjectCost:
    """A stored cost row; a row written with whole ids (the earlier format) is read too."""
    try:
        return _project_cost.decode(raw)
    except msgspec.ValidationError:
        cost, plan, ids = _project_cost_ids.decode(raw)
    return ProjectCost(cost, plan, digests_of(ids))


def cost_key(project: str, partition: int) -> bytes:
    """The `project-costs` key of a project's row on a partition."""
    return f"{project}/{partition}".encode()

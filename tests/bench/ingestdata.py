"""Synthetic completed-execution events for the ingest benchmark.

Events look like what a runtime reports for an LLM workflow: a name, a cost broken down by model,
a few trace spans and a short final output (about 1.7 KB of JSON each).
"""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-flash")
TRIGGERS = ("api", "api", "api", "webhook", "schedule", "manual", "chat")
WORDS = (
    "invoice", "summary", "customer", "ticket", "triage", "draft", "reply", "classify", "route",
    "extract", "fields", "translate", "review", "risk", "score", "enrich", "lead", "sync", "crm",
    "report", "digest", "answer", "question",
)  # fmt: skip

_encoder = msgspec.json.Encoder()


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as runtimes send it."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _span(
    rng: random.Random, name: str, kind: str, start: datetime, ms: int, model: str | None
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "id": f"span_{rng.getrandbits(48):012x}",
        "name": name,
        "type": kind,
        "status": "success",
        "duration": ms,
        "startTime": iso(start),
        "endTime": iso(start + timedelta(milliseconds=ms)),
    }
    if model is not None:
        prompt, completion = rng.randint(200, 3000), rng.randint(20, 800)
        span["model"] = model
        span["tokens"] = {"prompt": prompt, "completion": completion, "total": prompt + completion}
        span["input"] = {"messages": [{"role": "user", "content": _sentence(rng, 12)}]}
        span["output"] = {"content": _sentence(rng, 16)}
    return span


def completed_event(
    rng: random.Random, execution_id: str, workflow: int, now: datetime
) -> dict[str, Any]:
    """One `workflow.execution.completed` event that ended within the last few minutes."""
    duration_ms = rng.randint(300, 20_000)
    ended = now - timedelta(milliseconds=rng.randint(0, 120_000))
    started = ended - timedelta(milliseconds=duration_ms)
    model = MODELS[workflow % len(MODELS)]
    prompt, completion = rng.randint(200, 4000), rng.randint(20, 1200)
    cost_in, cost_out = round(prompt * 2.5e-6, 6), round(completion * 1e-5, 6)
    error = rng.random() < 0.05
    llm_ms = max(1, duration_ms - 120)
    return {
        "type": "workflow.execution.completed",
        "executionId": execution_id,
        "workflowId": f"wf_bench_{workflow:03d}",
        "workflowName": f"{WORDS[workflow % len(WORDS)].capitalize()} pipeline {workflow}",
        "trigger": rng.choice(TRIGGERS),
        "level": "error" if error else "info",
        "status": "error" if error else "success",
        "startedAt": iso(started),
        "endedAt": iso(ended),
        "totalDurationMs": duration_ms,
        "cost": {
            "total": round(cost_in + cost_out, 6),
            "input": cost_in,
            "output": cost_out,
            "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
            "models": {
                model: {
                    "input": cost_in,
                    "output": cost_out,
                    "total": round(cost_in + cost_out, 6),
                    "tokens": {
                        "prompt": prompt,
                        "completion": completion,
                        "total": prompt + completion,
                    },
                }
            },
        },
        "traceSpans": [
            _span(rng, "Start", "starter", started, 2, None),
            _span(rng, "Agent 1", "agent", started + timedelta(milliseconds=2), llm_ms, model),
            _span(rng, "Response", "response", ended - timedelta(milliseconds=5), 5, None),
        ],
        "finalOutput": {"content": _sentence(rng, 30), "model": model},
    }


def make_bodies(
    events: int, batch_size: int, workflows: int, prefix: str, seed: int = 7
) -> list[bytes]:
    """`{"events": [...]}` request bodies, JSON-encoded up front; execution ids `prefix-<n>`."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    for start in range(0, events, batch_size):
        batch = [
            completed_event(rng, f"{prefix}-{n}", rng.randrange(workflows), now)
            for n in range(start, min(events, start + batch_size))
        ]
        bodies.append(_encoder.encode({"events": batch}))
    return bodies

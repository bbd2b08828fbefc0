"""The pure message builders of PagerDuty, Teams and Discord: shapes, limits, truncation,
severity and dedup keys, checked with the receivers' own checkers (tests/receivers.py)."""

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.dispatcher.channels import discord, pagerduty, teams
from services.dispatcher.channels.base import Context
from services.dispatcher.channels.discord import Embed, limited
from tests.receivers import (
    DISCORD_LIMITS,
    TEAMS_MAX_BYTES,
    adaptive_card_problems,
    discord_problems,
    notification,
    pagerduty_problems,
    sample_payload,
)

BASE_URL = "https://cc.example.com"
CTX = Context(http=None, public_base_url=BASE_URL)  # type: ignore[arg-type]
KEY = "R0123456789abcdef0123456789ABCDE"
ALERT = {"id": "alr_7q2", "rule": "consecutive_failures", "reason": "3 failures in a row",
         "observed": 3, "threshold": 3, "notificationId": "ntf_9"}  # fmt: skip
RULES = ["consecutive_failures", "failure_rate", "error_count", "no_activity",
         "latency_threshold", "latency_spike", "cost_threshold"]  # fmt: skip
TEXT = st.text(st.characters(codec="utf-8"), max_size=12_000)


def texts(message: Any) -> str:
    return json.dumps(message, ensure_ascii=False)


def pd_event(payload: dict[str, Any]) -> dict[str, Any]:
    return pagerduty.event(notification("pagerduty", payload), KEY, CTX)


# ---- PagerDuty -------------------------------------------------------------------------------


def test_pagerduty_trigger_of_an_alert() -> None:
    event = pd_event(sample_payload(alert=ALERT))
    assert pagerduty_problems(event) == []
    assert event["routing_key"] == KEY and event["event_action"] == "trigger"
    assert event["dedup_key"] == "alr_7q2"
    body = event["payload"]
    assert body["summary"] == "Alert: Nightly report: 3 failures in a row"
    assert body["source"] == "wf_1" and body["severity"] == "error"
    assert body["timestamp"] == "2026-03-01T12:00:05.250Z"
    assert body["class"] == "consecutive_failures" and body["component"] == "Nightly report"
    details = body["custom_details"]
    assert details["alertId"] == "alr_7q2" and details["executionId"] == "exe_42"
    assert details["observed"] == 3 and details["duration"] == "2.00 s"
    assert event["links"] == [{"href": f"{BASE_URL}/api/v1/logs/log_7f3a", "text": "View log"}]
    assert event["client"] == "CodeCourier" and event["client_url"] == BASE_URL


def test_pagerduty_resolve_shares_the_dedup_key() -> None:
    event = pd_event(sample_payload("workflow.alert.resolved", alert=ALERT))
    assert event == {"routing_key": KEY, "dedup_key": "alr_7q2", "event_action": "resolve"}
    assert pagerduty_problems(event) == []


@pytest.mark.parametrize("rule", RULES)
def test_pagerduty_severity_by_rule(rule: str) -> None:
    event = pd_event(sample_payload(alert={**ALERT, "rule": rule}))
    expected = "warning" if rule.startswith("latency") or rule == "cost_threshold" else "error"
    assert event["payload"]["severity"] == expected


def test_pagerduty_test_send_triggers_with_its_event_id() -> None:
    event = pd_event(sample_payload(level="info", status="success"))
    assert event["dedup_key"] == "evt_k3yq5vqbm2x7"
    assert event["payload"]["severity"] == "info" and event["payload"]["class"] == "test"
    assert pagerduty_problems(event) == []


def test_pagerduty_bounds_the_summary_and_details_and_never_sends_spans() -> None:
    payload = sample_payload(
        workflowName="W\n" * 2000, traceSpans=[{"name": "SPAN-MARKER"}],
        alert={**ALERT, "id": "alr_" + "x" * 400, "reason": "r" * 5000},
    )  # fmt: skip
    event = pd_event(payload)
    assert pagerduty_problems(event) == []
    assert len(event["payload"]["summary"]) == 1024 and "\n" not in event["payload"]["summary"]
    assert len(event["dedup_key"]) == 255
    assert all(
        len(v) <= 1024 for v in event["payload"]["custom_details"].values() if isinstance(v, str)
    )
    assert "SPAN-MARKER" not in texts(event)


def test_pagerduty_checker_finds_what_the_events_api_rejects() -> None:
    bad = {"routing_key": "short", "event_action": "trigger", "dedup_key": "k" * 256,
           "payload": {"summary": "s" * 1025, "severity": "fatal"}}  # fmt: skip
    problems = " ".join(pagerduty_problems(bad))
    for expected in ("routing_key", "dedup_key", "summary", "source", "severity"):
        assert expected in problems
    assert pagerduty_problems({"routing_key": KEY, "event_action": "resolve"})
    assert "event_action" in pagerduty_problems({"routing_key": KEY, "event_action": "fire"})[0]


# ---- Teams -----------------------------------------------------------------------------------


def teams_message(payload: dict[str, Any]) -> dict[str, Any]:
    return teams.message(notification("teams", payload), CTX)


def test_teams_card_has_the_facts_and_a_log_action() -> None:
    message = teams_message(sample_payload(alert=ALERT, finalOutput={"rows": 3}))
    assert adaptive_card_problems(message) == []
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title, reason, factset, *rest = card["body"]
    assert title["text"] == "Alert: Nightly report" and title["color"] == "Attention"
    assert reason["text"] == "3 failures in a row"
    facts = {f["title"]: f["value"] for f in factset["facts"]}
    assert facts == {"Workflow": "Nightly report", "Status": "error", "Trigger": "api",
                     "Duration": "2.00 s", "Cost": "$0.0123", "Rule": "consecutive_failures",
                     "Observed": "3", "Threshold": "3"}  # fmt: skip
    assert rest[1]["fontType"] == "Monospace" and '"rows": 3' in rest[1]["text"]
    assert rest[-1]["text"] == "Execution exe_42"
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "View log", "url": f"{BASE_URL}/api/v1/logs/log_7f3a"}
    ]


def test_teams_resolved_is_good_and_spans_never_shown() -> None:
    payload = sample_payload("workflow.alert.resolved", alert=ALERT, traceSpans=[{"n": "SPAN-X"}])
    message = teams_message(payload)
    assert message["attachments"][0]["content"]["body"][0]["color"] == "Good"
    assert "SPAN-X" not in texts(message)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=TEXT, reason=TEXT, output=TEXT)
def test_teams_message_always_fits_28_kb(name: str, reason: str, output: str) -> None:
    payload = sample_payload(
        workflowName=name, finalOutput=output, alert={**ALERT, "reason": reason}
    )
    message = teams_message(payload)
    assert adaptive_card_problems(message) == []
    assert len(json.dumps(message, ensure_ascii=False).encode()) <= TEAMS_MAX_BYTES


def test_teams_cuts_a_huge_output_to_fit() -> None:
    message = teams_message(sample_payload(finalOutput="\x01" * 50_000))
    size = len(json.dumps(message, ensure_ascii=False).encode())
    assert size <= teams.MAX_BYTES
    body = message["attachments"][0]["content"]["body"]
    assert any(b.get("fontType") == "Monospace" and b["text"].endswith("…") for b in body)


# ---- Discord ---------------------------------------------------------------------------------


def discord_message(payload: dict[str, Any]) -> dict[str, Any]:
    return discord.message(notification("discord", payload), CTX)


def test_discord_embed_of_an_alert() -> None:
    message = discord_message(sample_payload(alert=ALERT, finalOutput="done"))
    assert discord_problems(message) == []
    assert message["allowed_mentions"] == {"parse": []}
    assert message["content"] == "Alert: Nightly report: 3 failures in a row"
    [embed] = message["embeds"]
    assert embed["title"] == "Alert: Nightly report"
    assert embed["url"] == f"{BASE_URL}/api/v1/logs/log_7f3a"
    assert embed["description"] == "3 failures in a row\n\n**Final output**\n```\ndone\n```"
    assert embed["color"] == 0xE01E5A and embed["timestamp"] == "2026-03-01T12:00:05.250Z"
    assert embed["footer"] == {"text": "Execution exe_42"}
    fields = [(f["name"], f["value"]) for f in embed["fields"]]
    assert fields[:3] == [("Workflow", "Nightly report"), ("Status", "error"), ("Trigger", "api")]
    assert ("Observed", "3") in fields and all(f["inline"] for f in embed["fields"])


def test_discord_mentions_in_tenant_text_cannot_ping() -> None:
    message = discord_message(sample_payload(workflowName="@everyone <@&123> @here"))
    assert message["allowed_mentions"] == {"parse": []}
    assert message["content"].startswith("Error Alert: @everyone")


def test_discord_code_fences_in_output_cannot_close_the_block() -> None:
    embed = discord_message(sample_payload(finalOutput="a```b"))["embeds"][0]
    assert embed["description"].count("```") == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=TEXT, reason=TEXT, output=TEXT, execution=TEXT, status=TEXT, trigger=TEXT)
def test_discord_message_always_within_limits(
    name: str, reason: str, output: str, execution: str, status: str, trigger: str
) -> None:
    payload = sample_payload(
        workflowName=name, finalOutput=output, executionId=execution, status=status,
        trigger=trigger, alert={**ALERT, "reason": reason},
    )  # fmt: skip
    message = discord_message(payload)
    assert discord_problems(message) == []
    assert len(message["content"]) <= DISCORD_LIMITS["content"]


FIELD = st.tuples(st.text(max_size=400), st.text(max_size=1500))


@settings(max_examples=200, deadline=None)
@given(
    title=st.text(max_size=600), description=st.text(max_size=9000),
    fields=st.lists(FIELD, max_size=40), footer=st.text(max_size=3000),
)  # fmt: skip
def test_limited_embed_within_every_limit_and_untouched_when_it_fits(
    title: str, description: str, fields: list[tuple[str, str]], footer: str
) -> None:
    embed = Embed(title, description, tuple(fields), footer)
    out = limited(embed)
    assert out.chars() <= discord.EMBED_CHARS
    assert len(out.title) <= 256 and len(out.description) <= 4096 and len(out.footer) <= 2048
    assert len(out.fields) <= 25
    assert all(0 < len(n) <= 256 and 0 < len(v) <= 1024 for n, v in out.fields)
    for before, after in ((embed.title, out.title), (embed.description, out.description)):
        assert (
            after == before or (after.endswith("…") and before.startswith(after[:-1])) or not after
        )
    fits = (len(title) <= 256 and len(description) <= 4096 and len(footer) <= 2048
            and len(fields) <= 25 and all(0 < len(n) <= 256 and 0 < len(v) <= 1024 for n, v in fields)
            and embed.chars() <= 6000)  # fmt: skip
    if fits:
        assert out == embed


def test_limited_cuts_the_description_first() -> None:
    embed = Embed("T", "d" * 4096, (("n", "v" * 1024),) * 2, "f" * 100)
    out = limited(embed)
    assert out.chars() == 6000 and out.title == "T" and out.fields == embed.fields
    assert out.footer == embed.footer and out.description.endswith("…")


@pytest.mark.parametrize(
    ("body", "expected"),
    [('{"message": "You are being rate limited.", "retry_after": 0.529, "global": false}', 0.529),
     ('{"retry_after": 3}', 3.0), ('{"retry_after": "3"}', None), ('{"retry_after": -1}', None),
     ("not json", None), ("[]", None), ('{"retry_after": true}', None)],
)  # fmt: skip
def test_discord_retry_after_from_the_body(body: str, expected: float | None) -> None:
    assert discord.retry_after_s(body) == expected


def test_discord_checker_finds_what_discord_rejects() -> None:
    bad = {"content": "c" * 2001, "embeds": [{"title": "t" * 257, "description": "d" * 4097,
           "fields": [{"name": "", "value": "v" * 1025}] * 26, "footer": {"text": "f" * 2049},
           "color": -1}]}  # fmt: skip
    problems = " ".join(discord_problems(bad))
    for expected in ("content", "title", "description", "fields[0].name", "fields[0].value",
                     "more than 25", "footer", "color", "6000"):  # fmt: skip
        assert expected in problems, expected
    assert discord_problems({"embeds": [{"title": "x"}] * 11})
    assert discord_problems({})

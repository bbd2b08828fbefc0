"""Delivery channels against real receivers: Node.js for webhooks, aiohttp for Slack, PagerDuty,
Teams and Discord, aiosmtpd for email (see tests/receivers.py)."""

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.common.egress import parse_cidrs
from services.common.processes import free_port
from services.dispatcher.channels import discord, email, pagerduty, slack, teams, webhook
from services.dispatcher.channels.base import Context, Result, Secrets
from services.dispatcher.egress import guarded_session
from tests.receivers import (
    DiscordReceiver,
    NodeWebhookReceiver,
    PagerDutyReceiver,
    Reply,
    SlackReceiver,
    SmtpReceiver,
    TeamsReceiver,
    notification,
    sample_payload,
)

LOOPBACK = parse_cidrs(["127.0.0.0/8"])
CURRENT = "whsec_" + base64.b64encode(b"current signing key, 32 bytes!!").decode()
PREVIOUS = "whsec_previous-secret_not-base64-0123"  # as `token_urlsafe` makes them
TRICKY = {
    "floats": [1.0, 1e21, 1e-7, 1e16, 0.1, -0.0], "big": 12345678901234567890,
    "keys": {"b": 1, "10": 2, "2": 3}, "text": "Grüße \u2028 \x7f / \"q\" \\ 😀 \x00",
}  # fmt: skip


@pytest.fixture(scope="module")
async def node_receiver() -> AsyncIterator[NodeWebhookReceiver]:
    async with NodeWebhookReceiver(secrets=[CURRENT, PREVIOUS]) as receiver:
        yield receiver


@pytest.fixture
async def hook(node_receiver: NodeWebhookReceiver) -> NodeWebhookReceiver:
    await node_receiver.reset()
    return node_receiver


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    async with guarded_session(LOOPBACK) as session:
        yield Context(http=session, timeout_s=5, public_base_url="https://cc.example.com")


def webhook_record(**destination: Any) -> Any:
    payload = sample_payload(finalOutput=TRICKY)
    return notification("webhook", payload, destination)


# ---- webhooks ------------------------------------------------------------------------------


async def test_webhook_verifies_over_raw_and_reserialised_body(
    hook: NodeWebhookReceiver, ctx: Context
) -> None:
    record = webhook_record(url=hook.url)
    result = await webhook.send(record, Secrets(CURRENT), ctx)
    assert result == Result(delivered=True, status=200, body="ok")
    [got] = await hook.received()
    assert got["reserialisedEqualsRaw"] is True
    assert got["body"].encode() == webhook.canonical_body(record.payload)
    assert got["sim"] == [{"raw": True, "stringify": True}, {"raw": False, "stringify": False}]
    assert got["standard"] is None
    headers = got["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "CodeCourier-Webhooks/1"
    assert headers["sim-event"] == "workflow.execution.completed"
    assert headers["sim-delivery-id"] == headers["idempotency-key"] == record.deliveryId
    assert headers["sim-signature"].startswith(f"t={headers['sim-timestamp']},v1=")
    assert abs(int(headers["sim-timestamp"]) - got["receivedAtMs"]) < 5000


async def test_webhook_during_rotation_verifies_with_either_secret(
    hook: NodeWebhookReceiver, ctx: Context
) -> None:
    record = webhook_record(url=hook.url, standardWebhooks=True)
    result = await webhook.send(record, Secrets(CURRENT, PREVIOUS), ctx)
    assert result.delivered
    [got] = await hook.received()
    assert got["sim"] == [{"raw": True, "stringify": True}] * 2
    assert got["standard"] == [True, True]
    assert got["headers"]["webhook-id"] == record.deliveryId
    assert int(got["headers"]["webhook-timestamp"]) == int(got["headers"]["sim-timestamp"]) // 1000


async def test_standard_webhooks_with_a_non_base64_secret(
    hook: NodeWebhookReceiver, ctx: Context
) -> None:
    record = webhook_record(url=hook.url, standardWebhooks=True)
    assert (await webhook.send(record, Secrets(PREVIOUS), ctx)).delivered
    [got] = await hook.received()
    assert got["standard"] == [False, True]
    assert got["sim"] == [{"raw": False, "stringify": False}, {"raw": True, "stringify": True}]


async def test_unsigned_webhook(hook: NodeWebhookReceiver, ctx: Context) -> None:
    assert (await webhook.send(webhook_record(url=hook.url), Secrets(), ctx)).delivered
    [got] = await hook.received()
    assert got["sim"] is None and "sim-signature" not in got["headers"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(500, body="boom"), Result(False, True, 500, "boom", "HTTP 500")),
        (Reply(429, {"Retry-After": "7"}, "slow down"),
         Result(False, True, 429, "slow down", "HTTP 429", retry_after_s=7.0)),
        (Reply(503, {"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"}, ""), None),
        (Reply(410, body="gone"),
         Result(False, False, 410, "gone", "HTTP 410: the receiver is gone", gone=True)),
        (Reply(302, {"Location": "/followed"}, ""),
         Result(False, False, 302, "", "HTTP 302: redirect not followed")),
        (Reply(400, body="bad"), Result(False, False, 400, "bad", "HTTP 400")),
    ],
)  # fmt: skip
async def test_webhook_statuses_are_classified(
    hook: NodeWebhookReceiver, ctx: Context, reply: Reply, expected: Result | None
) -> None:
    await hook.program([reply])
    result = await webhook.send(webhook_record(url=hook.url), Secrets(CURRENT), ctx)
    if expected is None:  # an HTTP-date Retry-After: far in the future, retryable
        assert result.retryable and result.retry_after_s is not None
        assert result.retry_after_s > 365 * 86400
    else:
        assert result == expected
    assert [r["url"] for r in await hook.received()] == ["/hook"]  # no redirect followed


async def test_webhook_timeout_is_retryable(hook: NodeWebhookReceiver, ctx: Context) -> None:
    await hook.program([Reply(200, delay_s=2)])
    quick = Context(http=ctx.http, timeout_s=0.3)
    result = await webhook.send(webhook_record(url=hook.url), Secrets(CURRENT), quick)
    assert result == Result(delivered=False, retryable=True, error="timed out after 0.3 s")


async def test_webhook_connection_refused_is_retryable(ctx: Context) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?token=s3cret-in-query"
    result = await webhook.send(webhook_record(url=url), Secrets(CURRENT), ctx)
    assert not result.delivered and result.retryable and result.error
    assert "s3cret-in-query" not in result.error and CURRENT not in result.error


async def test_egress_refusal_is_final(hook: NodeWebhookReceiver) -> None:
    async with guarded_session() as session:  # loopback not allowed
        result = await webhook.send(
            webhook_record(url=hook.url), Secrets(CURRENT), Context(session)
        )
    assert not result.delivered and not result.retryable
    assert result.error and "internal" in result.error
    assert await hook.received() == []


# ---- Slack ---------------------------------------------------------------------------------


async def test_slack_honours_retry_after_then_delivers(ctx: Context) -> None:
    async with SlackReceiver([Reply(429, {"Retry-After": "1"}, "rate_limited")]) as receiver:
        record = notification("slack", sample_payload(finalOutput="x" * 50_000))
        first = await slack.send(record, Secrets(receiver.url), ctx)
        assert first == Result(False, True, 429, "rate_limited", "HTTP 429", retry_after_s=1.0)
        second = await slack.send(record, Secrets(receiver.url), ctx)
        assert second == Result(delivered=True, status=200, body="ok")
    assert [r.problems for r in receiver.requests] == [[], []]
    message = receiver.requests[1].json()
    assert message["blocks"][0]["text"]["text"] == "Error Alert: Nightly report"
    assert receiver.requests[1].headers["Content-Type"] == "application/json"


async def test_slack_rejection_is_final(ctx: Context) -> None:
    async with SlackReceiver([Reply(404, body="no_service")]) as receiver:
        result = await slack.send(notification("slack"), Secrets(receiver.url), ctx)
    assert result == Result(False, False, 404, "no_service", "HTTP 404")


async def test_slack_errors_never_contain_the_webhook_url(ctx: Context) -> None:
    url = f"http://127.0.0.1:{free_port()}{SlackReceiver.path}"
    result = await slack.send(notification("slack"), Secrets(url), ctx)
    assert result.retryable and result.error
    assert "xoxSecretToken" not in result.error and url not in result.error
    missing = await slack.send(notification("slack"), Secrets(), ctx)
    assert missing == Result(delivered=False, error="the Slack webhook URL is missing")


# ---- email ---------------------------------------------------------------------------------


def email_record(*recipients: str) -> Any:
    payload = sample_payload(traceSpans=[{"name": "SPAN-MARKER"}], finalOutput={"a": 1})
    return notification("email", payload, {"recipients": list(recipients)})


def smtp_ctx(ctx: Context, url: str, timeout_s: float = 5) -> Context:
    return Context(
        http=ctx.http, timeout_s=timeout_s, smtp_url=url, public_base_url="https://cc.example.com"
    )


async def test_email_is_delivered_as_valid_mime(ctx: Context) -> None:
    async with SmtpReceiver(credentials=("mailer", "p@ss word")) as server:
        url = f"smtp://mailer:p%40ss%20word@127.0.0.1:{server.port}?allow_plaintext_auth=1"
        record = email_record("ops@example.com", "dev@example.com")
        result = await email.send(record, Secrets(), smtp_ctx(ctx, url))
    assert result.delivered and result.status == 250 and result.error is None
    assert server.logins == [("mailer", "p@ss word")]
    [mail] = server.mails
    assert mail.tls is None  # no STARTTLS offered: plain text, as the URL allows
    assert mail.sender == "alerts@codecourier.local"
    assert mail.recipients == ["ops@example.com", "dev@example.com"]
    message = mail.message
    assert message["Subject"] == "Error Alert: Nightly report"
    assert message["Message-ID"] == f"<{record.deliveryId}@codecourier>"
    assert message["Date"] is not None
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert message.get_content_type() == "multipart/alternative"
    assert kinds == ["text/plain", "text/html"]
    assert b"SPAN-MARKER" not in mail.data


async def test_email_partial_refusal_is_delivered_and_reported(ctx: Context) -> None:
    refuse = {"gone@example.com": "550 5.1.1 No such user"}
    async with SmtpReceiver(refuse=refuse) as server:
        record = email_record("ops@example.com", "gone@example.com")
        result = await email.send(record, Secrets(), smtp_ctx(ctx, server.url))
    assert result.delivered
    assert result.error == "refused recipients: gone@example.com (550 5.1.1 No such user)"
    assert [m.recipients for m in server.mails] == [["ops@example.com"]]


@pytest.mark.parametrize(("reply", "retryable"), [("550 5.1.1 No such user", False),
                                                  ("450 4.2.1 Mailbox busy", True)])  # fmt: skip
async def test_email_all_refused(ctx: Context, reply: str, retryable: bool) -> None:
    async with SmtpReceiver(refuse={"a@example.com": reply}) as server:
        result = await email.send(
            email_record("a@example.com"), Secrets(), smtp_ctx(ctx, server.url)
        )
    assert not result.delivered and result.retryable is retryable
    assert result.status == int(reply[:3]) and result.error
    assert result.error.startswith("all recipients refused: a@example.com")
    assert server.mails == []


async def test_email_bad_credentials_are_final_and_hidden(ctx: Context) -> None:
    async with SmtpReceiver(credentials=("mailer", "right")) as server:
        url = f"smtp://mailer:wrong-password@127.0.0.1:{server.port}?allow_plaintext_auth=true"
        result = await email.send(email_record("a@example.com"), Secrets(), smtp_ctx(ctx, url))
    assert not result.delivered and not result.retryable and result.status == 535
    assert result.error and "wrong-password" not in result.error


async def test_email_timeout_and_connection_errors_are_retryable(ctx: Context) -> None:
    async with SmtpReceiver(data_delay_s=2) as server:
        slow = await email.send(email_record("a@x.io"), Secrets(), smtp_ctx(ctx, server.url, 0.3))
    assert slow.retryable and slow.error == "timed out after 0.3 s"
    url = f"smtp://127.0.0.1:{free_port()}"
    down = await email.send(email_record("a@x.io"), Secrets(), smtp_ctx(ctx, url))
    assert down.retryable and not down.delivered and down.error


# ---- PagerDuty, Teams and Discord ----------------------------------------------------------

ROUTING_KEY = "R0123456789abcdef0123456789ABCDE"
ALERT = {"id": "alr_7q2", "rule": "latency_threshold", "reason": "took 2.00 s",
         "observed": 2000, "threshold": 1000, "notificationId": "ntf_9"}  # fmt: skip


def pagerduty_ctx(ctx: Context, receiver: PagerDutyReceiver) -> Context:
    return Context(
        http=ctx.http, timeout_s=5, public_base_url=ctx.public_base_url, pagerduty_url=receiver.url
    )


async def test_pagerduty_trigger_then_resolve_share_one_incident(ctx: Context) -> None:
    async with PagerDutyReceiver() as receiver:
        pd = pagerduty_ctx(ctx, receiver)
        fired = notification("pagerduty", sample_payload(alert=ALERT))
        resolved = notification("pagerduty", sample_payload("workflow.alert.resolved", alert=ALERT))
        first = await pagerduty.send(fired, Secrets(ROUTING_KEY), pd)
        second = await pagerduty.send(resolved, Secrets(ROUTING_KEY), pd)
    body = '{"status": "success", "message": "Event processed", "dedup_key": "alr_7q2"}'
    assert first == second == Result(delivered=True, status=202, body=body)
    assert [r.problems for r in receiver.requests] == [[], []]
    trigger, resolve = (r.json() for r in receiver.requests)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == "alr_7q2"
    assert trigger["payload"]["severity"] == "warning"
    assert trigger["links"][0]["href"] == "https://cc.example.com/api/v1/logs/log_7f3a"


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [(Reply(429, body='{"status":"throttle"}'), True), (Reply(502, body=""), True),
     (Reply(400, body='{"status":"invalid event"}'), False)],
)  # fmt: skip
async def test_pagerduty_statuses(ctx: Context, reply: Reply, retryable: bool) -> None:
    async with PagerDutyReceiver([reply]) as receiver:
        record = notification("pagerduty", sample_payload(alert=ALERT))
        result = await pagerduty.send(record, Secrets(ROUTING_KEY), pagerduty_ctx(ctx, receiver))
    assert not result.delivered and result.retryable is retryable
    assert result.status == reply.status and result.error
    assert ROUTING_KEY not in result.error


async def test_pagerduty_rejects_a_bad_routing_key_finally(ctx: Context) -> None:
    async with PagerDutyReceiver() as receiver:
        record = notification("pagerduty", sample_payload(alert=ALERT))
        result = await pagerduty.send(record, Secrets("short"), pagerduty_ctx(ctx, receiver))
    assert result.status == 400 and not result.retryable
    assert "routing_key" in result.body


async def test_teams_card_is_accepted_and_huge_outputs_fit(ctx: Context) -> None:
    async with TeamsReceiver() as receiver:
        record = notification("teams", sample_payload(alert=ALERT, finalOutput="é\x01" * 40_000))
        result = await teams.send(record, Secrets(receiver.url), ctx)
    assert result == Result(delivered=True, status=200, body="1")
    [request] = receiver.requests
    assert request.problems == [] and len(request.body) <= 28 * 1024
    assert request.headers["Content-Type"] == "application/json"
    assert request.path == TeamsReceiver.path


async def test_teams_errors_never_contain_the_url(ctx: Context) -> None:
    async with TeamsReceiver([Reply(503, body="busy")]) as receiver:
        busy = await teams.send(notification("teams"), Secrets(receiver.url), ctx)
    assert busy == Result(False, True, 503, "busy", "HTTP 503")
    url = f"http://127.0.0.1:{free_port()}{TeamsReceiver.path}"
    down = await teams.send(notification("teams"), Secrets(url), ctx)
    assert down.retryable and down.error and "TeamsSecret" not in down.error


TEAMS_FAILED = (
    "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error "
    "{code} with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef.0."
)


async def test_teams_200_that_tells_of_a_failure_is_not_a_delivery(ctx: Context) -> None:
    """Teams' incoming webhooks answer 200 with a text when they did not post the message."""
    replies = [Reply(200, body=TEAMS_FAILED.format(code=code)) for code in (429, 502, 413)]
    async with TeamsReceiver([*replies, Reply(202, body="")]) as receiver:
        results = [
            await teams.send(notification("teams"), Secrets(receiver.url), ctx) for _ in range(5)
        ]
    throttled, unavailable, refused, workflows, connector = results
    assert not throttled.delivered and throttled.retryable and throttled.status == 200
    assert throttled.error is not None and "HTTP error 429" in throttled.error
    assert not unavailable.delivered and unavailable.retryable
    assert not refused.delivered and not refused.retryable
    assert workflows == Result(delivered=True, status=202, body="")
    assert connector == Result(delivered=True, status=200, body="1")
    for result in results:
        assert "TeamsSecret" not in (result.error or "")


async def test_discord_429_retry_after_then_delivered(ctx: Context) -> None:
    async with DiscordReceiver([DiscordReceiver.rate_limited(1.25)]) as receiver:
        record = notification("discord", sample_payload(alert=ALERT, finalOutput="x" * 9000))
        first = await discord.send(record, Secrets(receiver.url), ctx)
        second = await discord.send(record, Secrets(receiver.url), ctx)
    assert not first.delivered and first.retryable and first.status == 429
    assert first.retry_after_s == 1.25  # the body's float, not the header's rounded 2
    assert second == Result(delivered=True, status=204, body="")
    assert [r.problems for r in receiver.requests] == [[], []]
    message = receiver.requests[1].json()
    assert message["allowed_mentions"] == {"parse": []}
    assert message["embeds"][0]["title"] == "Alert: Nightly report"


async def test_discord_rejection_is_final_and_hides_the_token(ctx: Context) -> None:
    async with DiscordReceiver([Reply(404, body='{"code": 10015}')]) as receiver:
        gone = await discord.send(notification("discord"), Secrets(receiver.url), ctx)
    assert gone == Result(False, False, 404, '{"code": 10015}', "HTTP 404")
    url = f"http://127.0.0.1:{free_port()}{DiscordReceiver.path}"
    down = await discord.send(notification("discord"), Secrets(url), ctx)
    assert down.retryable and down.error and "DiscordSecretToken" not in down.error
    missing = await discord.send(notification("discord"), Secrets(), ctx)
    assert missing == Result(delivered=False, error="the Discord webhook URL is missing")


async def test_new_channels_go_through_the_egress_guard() -> None:
    async with DiscordReceiver() as receiver, guarded_session() as session:  # no loopback
        result = await discord.send(
            notification("discord"), Secrets(receiver.url), Context(session)
        )
    assert not result.delivered and not result.retryable and result.error
    assert "DiscordSecretToken" not in result.error
    assert receiver.requests == []

"""Delivery channels, the pure parts: canonical body (against real Node.js), signatures,
headers, outcome classification, email and Slack messages."""

import json
import shutil
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.egress import EgressRefused
from services.dispatcher.channels import email, http, slack, summary, webhook
from services.dispatcher.channels.base import Context, Result, Secrets
from services.dispatcher.egress import HttpReply
from tests.receivers import block_kit_problems, notification, sample_payload

NOW_MS = 1_700_000_000_000
CURRENT = "whsec_current_secret_0123456789"
PREVIOUS = "whsec_previous_secret_987654321"
BASE_URL = "https://cc.example.com"


# ---- canonical body against Node.js --------------------------------------------------------


class Node:
    """One `node` process that answers each JSON line with JSON.stringify(JSON.parse(line))."""

    SCRIPT = (
        'require("readline").createInterface({input: process.stdin})'
        '.on("line", (l) => process.stdout.write(JSON.stringify(JSON.parse(l)) + "\\n"));'
    )

    def __init__(self) -> None:
        node = shutil.which("node") or "/usr/bin/node"
        self.process = subprocess.Popen(
            [node, "-e", self.SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def restringify(self, text: bytes) -> bytes:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(text + b"\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().rstrip(b"\n")

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(5)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    process = Node()
    yield process
    process.close()


def python_json(value: Any) -> bytes:
    """The same value in Python's own JSON spelling (`1e+16`, `1.0`, escaped surrogates)."""
    return json.dumps(value, ensure_ascii=True, allow_nan=False).encode()


def assert_matches_node(node: Node, value: Any) -> None:
    body = webhook.canonical_body(value)
    assert body == node.restringify(python_json(value))
    assert node.restringify(body) == body


EDGE_VALUES: list[Any] = [
    [1.0, -0.0, 0.1, 1e16, 1e21, 1e-7, 1e-6, 1.5e-7, 123456789012345680000.0, 5e-324],
    [1.7976931348623157e308, -1e21, 2.5e-5, 0.000123, 1e15, 9007199254740993.0],
    [2**53, 2**53 + 1, -(2**53) - 3, 2**64, 12345678901234567890, 10**21, 10**400],
    {"b": 1, "2": 2, "1": 3, "4294967294": 4, "4294967295": 5, "01": 6, "-1": 7, "1.5": 8},
    {"": 0, "0": [], "nested": {"10": {"9": None}}},
    'quote " backslash \\ slash / del \x7f ls \u2028 ps \u2029 nul \x00 us \x1f',
    "\b\f\n\r\t\x0b é 中文 😀 \ud800 lone \udfff x \ud83d",
    {"\ud800key": "\udc00"},
    {"a": [True, False, None, "", {}, []]},
    {"x": "12345678901234567890"},  # a long digit run inside a string: still fast-path safe
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=range(len(EDGE_VALUES)))
def test_canonical_body_is_what_node_reserialises(node: Node, value: Any) -> None:
    assert_matches_node(node, value)


def test_canonical_body_of_a_typical_payload(node: Node) -> None:
    payload = sample_payload(finalOutput={"answer": "Grüße <b>", "score": 0.87, "n": 3.0})
    body = webhook.canonical_body(payload)
    assert body.startswith(b'{"id":"evt_k3yq5vqbm2x7","type":"workflow.execution.completed"')
    assert b'"n":3}' in body and "Grüße".encode() in body
    assert_matches_node(node, payload)


def test_canonical_body_rewrites_decimals_as_javascript_reads_them(node: Node) -> None:
    # The numbers msgspec writes unlike JavaScript, beside a timestamp that only looks like one.
    text = "1.10 -0 1E+2 0.010 12345678.123456789 0.1234567890123456789 2.5 100"
    value = {"d": [Decimal(t) for t in text.split()], "at": "2026-11-24T01:00:00.000Z"}
    literal = '{"d":[' + ",".join(text.split()) + '],"at":"2026-11-24T01:00:00.000Z"}'
    assert webhook.canonical_body(value) == node.restringify(literal.encode())


def test_canonical_body_of_a_struct_equals_that_of_its_dict() -> None:
    class Cost(msgspec.Struct):
        total: float
        models: dict[str, float]

    value = Cost(2.0, {"a": 0.5, "1": 1e21})
    assert webhook.canonical_body(value) == b'{"total":2,"models":{"1":1e+21,"a":0.5}}'
    assert webhook.canonical_body(msgspec.Raw(b'{"x": 1.0}')) == b'{"x":1}'


keys = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=6),
    st.integers(0, 2**32).map(str),
    st.sampled_from(["0", "01", "-1", "4294967294", "4294967295", "1e3"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.integers(2**53 - 3, 2**53 + 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_canonical_body_matches_node_for_any_json_value(node: Node, value: Any) -> None:
    assert_matches_node(node, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"), (-0.0, "0"), (1e21, "1e+21"), (1e-7, "1e-7"), (1e16, "10000000000000000"),
        (1e-6, "0.000001"), (1.5e-7, "1.5e-7"), (-2.5e22, "-2.5e+22"), (0.1, "0.1"),
        (float("nan"), "null"), (float("inf"), "null"), (123e-20, "1.23e-18"),
    ],
)  # fmt: skip
def test_js_number(value: float, expected: str) -> None:
    assert webhook.js_number(value) == expected


# ---- signatures and headers ----------------------------------------------------------------

BODY = b'{"id":"evt_1","n":1}'
HEX_CURRENT = "546a0cbfdf965b546b46b0c892cb0b6734abd9e16d86b823a3c6e0c85f25becf"  # openssl
HEX_PREVIOUS = "441b1ce687604c7b96195749ae9b163791b7526682ca60acf553a8ec052687fa"


def test_sim_signature_known_vector() -> None:
    value = webhook.sim_signature(BODY, Secrets(CURRENT), NOW_MS)
    assert value == f"t={NOW_MS},v1={HEX_CURRENT}"


def test_sim_signature_during_rotation_signs_with_new_then_old() -> None:
    value = webhook.sim_signature(BODY, Secrets(CURRENT, PREVIOUS), NOW_MS)
    assert value == f"t={NOW_MS},v1={HEX_CURRENT},v1={HEX_PREVIOUS}"


def test_no_secret_no_signature() -> None:
    assert webhook.sim_signature(BODY, Secrets(), NOW_MS) is None
    assert webhook.standard_signature(BODY, Secrets(), "msg", 1) is None


def test_standard_webhooks_known_vector() -> None:
    # The example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    value = webhook.standard_signature(
        b'{"test": 2432232314}', Secrets(secret), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    )
    assert value == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_webhooks_rotation_lists_both_signatures() -> None:
    value = webhook.standard_signature(BODY, Secrets(CURRENT, PREVIOUS), "dlv_1", 1)
    assert value is not None
    first, second = value.split(" ")
    assert first.startswith("v1,") and second.startswith("v1,") and first != second


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", bytes.fromhex(
            "31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0")),
        ("whsec_not-base64_at-all", b"whsec_not-base64_at-all"),
        ("plain secret", b"plain secret"),
        ("whsec_", b"whsec_"),
    ],
)  # fmt: skip
def test_standard_key(secret: str, key: bytes) -> None:
    assert webhook.standard_key(secret) == key


def test_headers() -> None:
    record = notification(destination={"url": "https://hooks.example.com/x"})
    headers = webhook.headers(record, BODY, Secrets(CURRENT), NOW_MS)
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "CodeCourier-Webhooks/1",
        "sim-event": "workflow.execution.completed",
        "sim-timestamp": str(NOW_MS),
        "sim-delivery-id": record.deliveryId,
        "Idempotency-Key": record.deliveryId,
        "sim-signature": f"t={NOW_MS},v1={HEX_CURRENT}",
    }


def test_standard_webhooks_headers_are_opt_in() -> None:
    record = notification(destination={"url": "https://h.example.com", "standardWebhooks": True})
    headers = webhook.headers(record, BODY, Secrets(CURRENT), NOW_MS + 999)
    assert headers["webhook-id"] == record.deliveryId
    assert headers["webhook-timestamp"] == str(NOW_MS // 1000)
    expected = webhook.standard_signature(BODY, Secrets(CURRENT), record.deliveryId, NOW_MS // 1000)
    assert headers["webhook-signature"] == expected
    unsigned = webhook.headers(record, BODY, Secrets(), NOW_MS)
    assert "webhook-signature" not in unsigned and "sim-signature" not in unsigned


# ---- outcome of an attempt -----------------------------------------------------------------


def reply(status: int, **headers: str) -> HttpReply:
    return HttpReply(status, headers, f"body of {status}")


@pytest.mark.parametrize(
    ("status", "delivered", "retryable", "gone"),
    [
        (200, True, False, False), (204, True, False, False), (500, False, True, False),
        (503, False, True, False), (429, False, True, False), (410, False, False, True),
        (400, False, False, False), (404, False, False, False), (302, False, False, False),
    ],
)  # fmt: skip
def test_outcome_of_a_status(status: int, delivered: bool, retryable: bool, gone: bool) -> None:
    result = http.outcome(reply(status), NOW_MS / 1000)
    assert (result.delivered, result.retryable, result.gone) == (delivered, retryable, gone)
    assert result.status == status and result.body == f"body of {status}"
    assert (result.error is None) == delivered


def test_redirects_are_final_and_say_so() -> None:
    result = http.outcome(reply(307, Location="https://elsewhere"), 0)
    assert result.error == "HTTP 307: redirect not followed"


def test_response_bodies_are_clipped_to_16_kib() -> None:
    result = http.outcome(HttpReply(500, {}, "x" * 20_000), 0)
    assert len(result.body) == 16 * 1024


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0), (" 0 ", 0.0), ("1.5", 1.5), ("Tue, 14 Nov 2023 22:15:20 GMT", 100.0),
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0), ("soon", None), ("-5", None), ("", None),
        (None, None),
    ],
)  # fmt: skip
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert http.retry_after_s(value, 1_700_000_020.0) == expected


def test_retry_after_is_taken_from_429_and_5xx() -> None:
    result = http.outcome(reply(429, **{"Retry-After": "7"}), 0)
    assert result.retryable and result.retry_after_s == 7.0


def test_egress_refusal_is_final_even_when_wrapped() -> None:
    refusal = EgressRefused("Receiver address 10.0.0.1 is internal; it is not allowed.")
    wrapped = aiohttp.ClientConnectionError("cannot connect")
    wrapped.__cause__ = refusal
    for exc in (refusal, wrapped):
        result = http.failure(exc, 30, [])
        assert not result.retryable and result.error == str(refusal)


def test_network_errors_are_retryable_and_hide_secrets() -> None:
    url = "https://hooks.slack.com/services/T1/B2/SECRET"
    exc = aiohttp.ClientConnectionError(f"cannot reach {url} (/services/T1/B2/SECRET)")
    result = http.failure(exc, 30, [url, "/services/T1/B2/SECRET"])
    assert result.retryable and result.error is not None and "SECRET" not in result.error
    timeout = http.failure(TimeoutError(), 2.5, [])
    assert timeout.retryable and timeout.error == "timed out after 2.5 s"


# ---- email ---------------------------------------------------------------------------------


@pytest.fixture
async def ctx() -> Any:
    async with aiohttp.ClientSession(trust_env=False) as session:
        yield Context(http=session, public_base_url=BASE_URL + "/", smtp_url=None)


ALERT = {"id": "alr_1", "rule": "consecutive_failures", "reason": "3 failures in a row <b>",
         "observed": 3, "threshold": 3, "notificationId": "ntf_9"}  # fmt: skip
SUBJECTS = [
    (sample_payload(alert=ALERT), "Alert: Nightly report"),
    (sample_payload("workflow.alert.no_activity", alert=ALERT), "Alert: Nightly report"),
    (sample_payload("workflow.alert.resolved", alert=ALERT), "Resolved: Nightly report"),
    (sample_payload(), "Error Alert: Nightly report"),
    (sample_payload(level="info", status="success"), "Workflow Completed: Nightly report"),
    (sample_payload(workflowName=None, level="info"), "Workflow Completed: wf_1"),
]


def parse(message: EmailMessage) -> EmailMessage:
    parsed = BytesParser(policy=default_policy).parsebytes(message.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(message: EmailMessage) -> dict[str, str]:
    found = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        found[part.get_content_type()] = str(part.get_content())
    return found


@pytest.mark.parametrize(("payload", "subject"), SUBJECTS)
async def test_email_subjects(ctx: Context, payload: dict[str, Any], subject: str) -> None:
    message = parse(email.build_message(notification("email", payload), ctx))
    assert message["Subject"] == subject


async def test_email_has_both_parts_and_every_fact(ctx: Context) -> None:
    record = notification("email", sample_payload(alert=ALERT), {"recipients": ["a@x.io"]})
    message = parse(email.build_message(record, ctx))
    assert message.get_content_type() == "multipart/alternative"
    assert message["To"] == "a@x.io" and message["From"] == ctx.email_from
    text, html = parts(message)["text/plain"], parts(message)["text/html"]
    log = "https://cc.example.com/api/v1/logs/log_7f3a"
    for fact in ("3 failures in a row", "Status: error", "Trigger: api", "Duration: 2.00 s",
                 "Cost: $0.0123", "Execution: exe_42", f"Log: {log}"):  # fmt: skip
        assert fact in text
    assert f'href="{log}"' in html and "exe_42" in html and "$0.0123" in html


async def test_email_message_id_is_stable_per_delivery(ctx: Context) -> None:
    record = notification("email", destination={"recipients": ["a@x.io"]})
    first, again = email.build_message(record, ctx), email.build_message(record, ctx)
    assert first["Message-ID"] == again["Message-ID"] == f"<{record.deliveryId}@codecourier>"


async def test_email_escapes_user_text_and_never_shows_spans(ctx: Context) -> None:
    payload = sample_payload(
        workflowName="<script>alert(1)</script>\r\nBcc: x@evil.io",
        finalOutput={"html": "<img src=x onerror=alert(2)>"},
        traceSpans=[{"name": "SPAN-MARKER", "input": "secret prompt"}],
    )
    record = notification("email", payload, {"recipients": ["a@x.io"]})
    raw = email.build_message(record, ctx).as_bytes()
    message = parse(email.build_message(record, ctx))
    html = parts(message)["text/html"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img src=x" in html
    assert b"SPAN-MARKER" not in raw and b"secret prompt" not in raw
    assert message["Bcc"] is None and "\n" not in message["Subject"]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
async def test_email_subject_survives_every_line_separator(ctx: Context, separator: str) -> None:
    payload = sample_payload(workflowName=f"Nightly{separator}Bcc: x@evil.io")
    message = parse(email.build_message(notification("email", payload), ctx))
    assert message["Subject"] == "Error Alert: Nightly Bcc: x@evil.io"
    assert message["Bcc"] is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet=st.characters(codec=None), max_size=300))
def test_email_building_never_raises_whatever_the_workflow_name(name: str) -> None:
    ctx = Context(http=None, public_base_url=BASE_URL, smtp_url=None)  # type: ignore[arg-type]
    record = notification("email", sample_payload(workflowName=name or None))
    raw = email.build_message(record, ctx).as_bytes()
    subject = BytesParser(policy=default_policy).parsebytes(raw)["Subject"]
    assert not any(c in subject for c in "\r\n\u2028\u2029\x85")


async def test_email_recipients_are_capped_at_ten(ctx: Context) -> None:
    addresses = [f"user{i}@x.io" for i in range(12)]
    record = notification("email", destination={"recipients": addresses})
    assert email.recipients(record) == addresses[:10]
    assert parse(email.build_message(record, ctx))["To"] == ", ".join(addresses[:10])


@pytest.mark.parametrize(
    ("ms", "text"),
    [(850, "850 ms"), (1250, "1.25 s"), (125_000, "2 min 5 s"), (3_720_000, "1 h 2 min")],
)
def test_duration_text(ms: int, text: str) -> None:
    assert summary.duration_text(ms) == text


async def test_email_without_smtp_is_a_final_failure(ctx: Context) -> None:
    result = await email.send(notification("email"), Secrets(), ctx)
    assert result == Result(delivered=False, error="email is not configured (CC_SMTP_URL)")


def test_smtp_url() -> None:
    server = email.smtp_server("smtps://me%40x.io:p%3Ass@mail.example.com")
    assert (server.host, server.port, server.implicit_tls) == ("mail.example.com", 465, True)
    assert (server.username, server.password) == ("me@x.io", "p:ss")
    assert email.smtp_server("smtp://mail.example.com").port == 25
    assert email.smtp_server("smtp://u:p@mail.example.com").start_tls is True
    assert email.smtp_server("smtp://mail.example.com").start_tls is None
    assert email.smtp_server("smtps://u:p@mail.example.com").start_tls is False
    opted_in = email.smtp_server("smtp://u:p@mail.example.com?allow_plaintext_auth=1")
    assert opted_in.plaintext_auth and opted_in.start_tls is None
    with pytest.raises(ValueError, match="CC_SMTP_URL"):
        email.smtp_server("http://mail.example.com")


# ---- Slack ---------------------------------------------------------------------------------


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    return slack.message(
        notification("slack", payload), Context(http=None, public_base_url=BASE_URL)
    )  # type: ignore[arg-type]


def texts(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def test_slack_message_is_valid_block_kit_with_every_fact() -> None:
    message = slack_message(sample_payload(alert=ALERT))
    assert block_kit_problems(message) == []
    assert message["text"] == "Alert: Nightly report: 3 failures in a row &lt;b&gt;"
    assert message["blocks"] == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": "Alert: Nightly report", "emoji": True},
        }
    ]
    [attachment] = message["attachments"]
    assert attachment["color"] == "#e01e5a"
    reason, facts, actions, context = attachment["blocks"]
    assert reason["text"]["text"] == "3 failures in a row &lt;b&gt;"
    fields = [f["text"] for f in facts["fields"]]
    assert fields == ["*Status*\nerror", "*Trigger*\napi", "*Duration*\n2.00 s", "*Cost*\n$0.0123"]
    [button] = actions["elements"]
    assert button["url"] == f"{BASE_URL}/api/v1/logs/log_7f3a"
    assert context["elements"][0]["text"] == "Execution `exe_42`"


@pytest.mark.parametrize(
    ("payload", "colour"),
    [
        (sample_payload("workflow.alert.resolved", alert=ALERT), "#2eb67d"),
        (sample_payload(level="info", status="success"), "#2eb67d"),
        (sample_payload(), "#e01e5a"),
    ],
)
def test_slack_colour_tells_the_outcome(payload: dict[str, Any], colour: str) -> None:
    assert slack_message(payload)["attachments"][0]["color"] == colour


def test_slack_message_stays_within_limits_with_a_huge_output() -> None:
    output = "<&> ``` " * 20_000
    payload = sample_payload(
        workflowName="W" * 400, finalOutput=output, alert={**ALERT, "reason": "r&" * 3000}
    )
    message = slack_message(payload)
    assert block_kit_problems(message) == []
    assert len(message["blocks"][0]["text"]["text"]) == 150
    code = [
        b for b in message["attachments"][0]["blocks"] if "```" in b.get("text", {}).get("text", "")
    ]
    [section] = code
    text = section["text"]["text"]
    assert (
        len(text) <= 3000 and text.startswith("*Final output*\n```\n") and text.endswith("…\n```")
    )
    assert text.count("```") == 2 and "&lt;&amp;&gt;" in text


def test_slack_message_without_execution_or_output() -> None:
    payload = sample_payload("workflow.alert.no_activity", alert=ALERT)
    payload["data"] = {"workflowId": "wf_1", "alert": ALERT}
    payload["links"] = {}
    message = slack_message(payload)
    assert block_kit_problems(message) == []
    assert "actions" not in {b["type"] for b in message["attachments"][0]["blocks"]}
    assert "Final output" not in texts(message)


def test_slack_never_shows_spans() -> None:
    payload = sample_payload(traceSpans=[{"name": "SPAN-MARKER"}])
    assert "SPAN-MARKER" not in texts(slack_message(payload))


def test_block_kit_checker_finds_what_slack_rejects() -> None:
    bad = {
        "blocks": [
            {"type": "header", "text": {"type": "mrkdwn", "text": "x" * 151}},
            {"type": "section"},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11},
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": ""}}],
            },
            {"type": "carousel"},
        ]
        * 11,
    }
    problems = block_kit_problems(bad)
    for expected in ("blocks[0].text.type", "blocks[0].text.text", "blocks[1]: a section needs",
                     "blocks[2].fields", "blocks[3].elements[0].text.text", "blocks[4]: unknown",
                     "55 blocks"):  # fmt: skip
        assert any(expected in p for p in problems), expected


def test_decimals_are_numbers_as_on_the_topics() -> None:
    assert webhook.canonical_body({"a": Decimal("1.50"), "b": Decimal("3")}) == b'{"a":1.5,"b":3}'
    assert (
        webhook.canonical_body({"a": Decimal("1e21"), "s": "\ud800"})
        == b'{"a":1e+21,"s":"\\ud800"}'
    )

"""Real receivers for delivery tests: a Node.js webhook receiver, Slack-, PagerDuty-, Teams- and
Discord-like ones, and SMTP.

Each is an async context manager that listens on a free port on 127.0.0.1, records what it
received and answers as programmed (`Reply`: status, headers, body, delay; once the programmed
replies are used up, 200 "ok"):

    async with NodeWebhookReceiver(secrets=["whsec_..."]) as hook:
        await hook.program([Reply(429, headers={"Retry-After": "3"})])
        ...  # deliver to hook.url
        [request] = await hook.received()   # with the receiver's own signature checks

`block_kit_problems` checks a Slack message the way Slack does before accepting it;
`pagerduty_problems`, `adaptive_card_problems` and `discord_problems` do the same for PagerDuty's
Events API v2, Teams and Discord.
"""

import asyncio
import json
import re
import shutil
import ssl
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import msgspec
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from schemas.destinations import Destination
from schemas.notifications import NotificationRecord, NotificationType
from schemas.payloads import DeliveryPayload


@dataclass
class Reply:
    """One programmed answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    delay_s: float = 0.0


# A receiver as a Node.js user writes one: it verifies `sim-signature` over the raw body and
# over `JSON.stringify(req.body)` (what Express users do), and Standard Webhooks signatures,
# once per configured secret. Control endpoints live under /__receiver/.
NODE_RECEIVER = r"""
const http = require("http");
const crypto = require("crypto");
let replies = [], secrets = [], received = [];

const hmac = (key, parts, encoding) => {
  const mac = crypto.createHmac("sha256", key);
  for (const part of parts) mac.update(part);
  return mac.digest(encoding);
};
const same = (a, b) => {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
};
const standardKey = (secret) => {
  if (secret.startsWith("whsec_")) {
    const b64 = secret.slice(6);
    if (b64.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return Buffer.from(b64, "base64");
  }
  return Buffer.from(secret, "utf8");
};

function verifySim(header, raw, reserialised) {
  if (!header) return null;
  const parts = header.split(",");
  const t = (parts.find((p) => p.startsWith("t=")) || "t=").slice(2);
  const given = parts.filter((p) => p.startsWith("v1=")).map((p) => p.slice(3));
  return secrets.map((secret) => ({
    raw: given.some((v) => same(v, hmac(secret, [t + ".", raw], "hex"))),
    stringify: reserialised !== null &&
      given.some((v) => same(v, hmac(secret, [t + "." + reserialised], "hex"))),
  }));
}

function verifyStandard(headers, raw) {
  const id = headers["webhook-id"], ts = headers["webhook-timestamp"];
  const header = headers["webhook-signature"];
  if (!id || !ts || !header) return null;
  const given = header.split(" ").map((s) => s.split(",")).filter(([v]) => v === "v1").map(([, s]) => s);
  return secrets.map((secret) => {
    const expected = hmac(standardKey(secret), [`${id}.${ts}.`, raw], "base64");
    return given.some((v) => same(v, expected));
  });
}

function control(req, raw, res) {
  const send = (value) => { res.writeHead(200, {"content-type": "application/json"}); res.end(JSON.stringify(value)); };
  if (req.url === "/__receiver/received") return send(received);
  if (req.url === "/__receiver/program") {
    const program = JSON.parse(raw.toString("utf8"));
    replies = program.replies || [];
    if (program.secrets) secrets = program.secrets;
    return send({ok: true});
  }
  if (req.url === "/__receiver/reset") { received = []; replies = []; return send({ok: true}); }
  res.writeHead(404); res.end();
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const raw = Buffer.concat(chunks);
    if (req.url.startsWith("/__receiver/")) return control(req, raw, res);
    const text = raw.toString("utf8");
    let body = null, reserialised = null;
    try { body = JSON.parse(text); reserialised = JSON.stringify(body); } catch (e) {}
    received.push({
      method: req.method, url: req.url, headers: req.headers, body: text, json: body,
      reserialisedEqualsRaw: reserialised === text,
      sim: verifySim(req.headers["sim-signature"], raw, reserialised),
      standard: verifyStandard(req.headers, raw), receivedAtMs: Date.now(),
    });
    const reply = replies.shift() || {status: 200, headers: {}, body: "ok", delay_s: 0};
    res.on("error", () => {});
    setTimeout(() => { res.writeHead(reply.status, reply.headers); res.end(reply.body); },
               reply.delay_s * 1000);
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({port: server.address().port}) + "\n");
});
"""


class NodeWebhookReceiver:
    """A webhook receiver running in Node.js; `received()` includes its signature checks.

    Each received request is a dict: method, url, headers, body (text), json (parsed),
    reserialisedEqualsRaw, sim (per secret: {"raw": ok, "stringify": ok}, None when unsigned),
    standard (per secret: ok, None without Standard Webhooks headers), receivedAtMs.
    """

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self.secrets = list(secrets)
        self.port = 0
        self._dir = tempfile.TemporaryDirectory(prefix="node-receiver-")
        self._process: asyncio.subprocess.Process | None = None
        self._control: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """Where webhooks go."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> Self:
        node = shutil.which("node") or "/usr/bin/node"
        script = Path(self._dir.name) / "receiver.js"
        script.write_text(NODE_RECEIVER)
        self._process = await asyncio.create_subprocess_exec(
            node, str(script), stdout=asyncio.subprocess.PIPE
        )
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 10)
        self.port = int(json.loads(line)["port"])
        self._control = aiohttp.ClientSession(trust_env=False)
        await self.program(secrets=self.secrets)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._control is not None:
            await self._control.close()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._dir.cleanup()

    async def program(
        self, replies: Iterable[Reply] = (), secrets: Sequence[str] | None = None
    ) -> None:
        """Set the next answers (and the secrets signatures are checked with)."""
        program: dict[str, Any] = {"replies": [asdict(r) for r in replies]}
        if secrets is not None:
            program["secrets"] = list(secrets)
        await self._call("program", program)

    async def received(self) -> list[dict[str, Any]]:
        """Every webhook received so far, oldest first."""
        result: list[dict[str, Any]] = await self._call("received")
        return result

    async def reset(self) -> None:
        """Forget what was received and programmed."""
        await self._call("reset", {})

    async def _call(self, name: str, body: Any = None) -> Any:
        assert self._control is not None
        url = f"http://127.0.0.1:{self.port}/__receiver/{name}"
        method = "GET" if body is None else "POST"
        async with self._control.request(method, url, json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()


@dataclass(frozen=True)
class Received:
    """One request an `HttpReceiver` got, with the problems it found in it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    problems: list[str]

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class HttpReceiver:
    """An aiohttp receiver: records every request, answers with the programmed replies."""

    path = "/hook"

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.requests: list[Received] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where deliveries go."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def problems(self, body: bytes) -> list[str]:
        """What is wrong with a request body (nothing, unless a subclass knows better)."""
        return []

    def rejection(self, problems: list[str]) -> web.Response:
        """The answer to a body with problems."""
        return web.Response(status=400, text="; ".join(problems))

    def accepted(self, body: bytes) -> web.Response:
        """The answer to a good body once the programmed replies are used up."""
        return web.Response(status=200, text="ok")

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        problems = self.problems(body)
        self.requests.append(
            Received(request.method, request.path_qs, dict(request.headers), body, problems)
        )
        if problems:
            return self.rejection(problems)
        if not self.replies:
            return self.accepted(body)
        reply = self.replies.popleft()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)


class SlackReceiver(HttpReceiver):
    """A Slack incoming webhook: rejects what Slack rejects (`invalid_blocks`), else as programmed."""

    path = "/services/T0CODECOUR/B0RECEIVER/xoxSecretToken1234567890"

    def problems(self, body: bytes) -> list[str]:
        try:
            message = json.loads(body)
        except ValueError:
            return ["invalid_payload: not JSON"]
        return block_kit_problems(message)

    def rejection(self, problems: list[str]) -> web.Response:
        return web.Response(status=400, text="invalid_blocks")


class PagerDutyReceiver(HttpReceiver):
    """PagerDuty's Events API v2: rejects what it rejects (400 "invalid event"), else answers
    202 with the event's dedup key, unless programmed otherwise."""

    path = "/v2/enqueue"

    def problems(self, body: bytes) -> list[str]:
        try:
            event = json.loads(body)
        except ValueError:
            return ["not JSON"]
        return pagerduty_problems(event)

    def rejection(self, problems: list[str]) -> web.Response:
        reply = {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": problems,
        }
        return web.json_response(reply, status=400)

    def accepted(self, body: bytes) -> web.Response:
        key = json.loads(body).get("dedup_key") or "generated-dedup-key"
        reply = {"status": "success", "message": "Event processed", "dedup_key": key}
        return web.json_response(reply, status=202)


class TeamsReceiver(HttpReceiver):
    """A Teams incoming webhook: 413 over 28 KB, 400 for a card Teams cannot render, else
    200 "1" as Teams answers, unless programmed otherwise."""

    path = "/webhookb2/0c5c-guid@72f9-tenant/IncomingWebhook/a1b2c3TeamsSecret/5d6e-owner"

    def problems(self, body: bytes) -> list[str]:
        if len(body) > TEAMS_MAX_BYTES:
            return [f"413: {len(body)} bytes, more than {TEAMS_MAX_BYTES}"]
        try:
            message = json.loads(body)
        except ValueError:
            return ["not JSON"]
        return adaptive_card_problems(message)

    def rejection(self, problems: list[str]) -> web.Response:
        status = 413 if problems[0].startswith("413") else 400
        return web.Response(status=status, text="; ".join(problems))

    def accepted(self, body: bytes) -> web.Response:
        return web.Response(status=200, text="1")


class DiscordReceiver(HttpReceiver):
    """A Discord channel webhook: rejects what Discord rejects (400 "Invalid Form Body"), else
    204, unless programmed otherwise (`rate_limited` is Discord's 429)."""

    path = "/api/webhooks/1234567890123456789/DiscordSecretToken_abcdefghijklmnop"

    def problems(self, body: bytes) -> list[str]:
        try:
            message = json.loads(body)
        except ValueError:
            return ["not JSON"]
        return discord_problems(message)

    def rejection(self, problems: list[str]) -> web.Response:
        reply = {"code": 50035, "message": "Invalid Form Body", "errors": problems}
        return web.json_response(reply, status=400)

    def accepted(self, body: bytes) -> web.Response:
        return web.Response(status=204)

    @staticmethod
    def rate_limited(retry_after_s: float) -> Reply:
        """Discord's 429: the wait in the JSON body (a float) and, rounded up, in a header."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after_s,
                "global": False}  # fmt: skip
        headers = {"Retry-After": str(int(retry_after_s) + 1), "Content-Type": "application/json"}
        return Reply(429, headers, json.dumps(body))


@dataclass(frozen=True)
class Mail:
    """One message an `SmtpReceiver` accepted."""

    sender: str
    recipients: list[str]
    data: bytes
    tls: str | None = None  # the TLS version it came over, None for plain text

    @property
    def message(self) -> EmailMessage:
        """The message, parsed."""
        parsed = BytesParser(policy=default_policy).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


class SmtpReceiver:
    """An aiosmtpd server: `refuse` maps addresses to the reply refusing them (`550 ...`).

    With `credentials`, AUTH is offered and logins are recorded. With `tls` (a server context),
    STARTTLS is offered and required before AUTH and MAIL; with `implicit_tls` as well, the
    connection is TLS from the start instead (`smtps://`). Without `tls`, all is plain text.
    """

    def __init__(
        self,
        refuse: Mapping[str, str] | None = None,
        credentials: tuple[str, str] | None = None,
        data_delay_s: float = 0.0,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.refuse = dict(refuse or {})
        self.credentials = credentials
        self.data_delay_s = data_delay_s
        self.tls = tls
        self.implicit_tls = implicit_tls and tls is not None
        self.mails: list[Mail] = []
        self.logins: list[tuple[str, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The `CC_SMTP_URL` of this server."""
        user = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{user}127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        starttls = None if self.implicit_tls else self.tls

        def protocol() -> SMTP:
            return SMTP(
                self,
                hostname="receiver.test",
                auth_require_tls=starttls is not None,
                authenticator=self._authenticate if self.credentials else None,
                tls_context=starttls,
                require_starttls=starttls is not None,
            )

        loop = asyncio.get_running_loop()
        implicit = self.tls if self.implicit_tls else None
        self._server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (data.login.decode(), data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login == self.credentials, handled=False)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        content = envelope.original_content or b""  # the bytes as sent, dot-unstuffed
        tls = server.transport.get_extra_info("ssl_object") if server.transport else None
        version = tls.version() if isinstance(tls, ssl.SSLObject) else None
        self.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), content, version))
        return "250 Message accepted for delivery"


# ---- Block Kit, as Slack checks it ----------------------------------------------------------

MAX_BLOCKS = 50
TEXT_KEYS = {"type", "text", "emoji", "verbatim"}
BLOCK_KEYS: dict[str, set[str]] = {
    "header": {"type", "text", "block_id"},
    "section": {"type", "text", "fields", "accessory", "block_id", "expand"},
    "divider": {"type", "block_id"},
    "context": {"type", "elements", "block_id"},
    "actions": {"type", "elements", "block_id"},
    "image": {"type", "image_url", "alt_text", "title", "block_id"},
}
BUTTON_KEYS = {
    "type",
    "text",
    "action_id",
    "url",
    "value",
    "style",
    "confirm",
    "accessibility_label",
}
COLOR = re.compile(r"#[0-9a-fA-F]{6}|good|warning|danger")


def block_kit_problems(message: Any) -> list[str]:
    """What Slack would reject in an incoming-webhook message (empty when it is acceptable)."""
    if not isinstance(message, dict):
        return ["message: not a JSON object"]
    problems: list[str] = []
    text, blocks, attachments = (
        message.get("text"),
        message.get("blocks"),
        message.get("attachments"),
    )
    if not text and not blocks and not attachments:
        problems.append("message: no text, blocks or attachments")
    if text is not None and (not isinstance(text, str) or len(text) > 40_000):
        problems.append("text: not a string of at most 40,000 characters")
    count = 0
    if blocks is not None:
        problems += _blocks("blocks", blocks)
        count += len(blocks) if isinstance(blocks, list) else 0
    if attachments is not None and not isinstance(attachments, list):
        return [*problems, "attachments: not an array"]
    for i, attachment in enumerate(attachments or []):
        where = f"attachments[{i}]"
        if not isinstance(attachment, dict):
            problems.append(f"{where}: not an object")
            continue
        color = attachment.get("color")
        if color is not None and not (isinstance(color, str) and COLOR.fullmatch(color)):
            problems.append(f"{where}.color: not a colour")
        if "blocks" in attachment:
            problems += _blocks(f"{where}.blocks", attachment["blocks"])
            count += len(attachment["blocks"]) if isinstance(attachment["blocks"], list) else 0
    if count > MAX_BLOCKS:
        problems.append(f"message: {count} blocks, more than {MAX_BLOCKS}")
    return problems


def _blocks(where: str, blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return [f"{where}: not an array"]
    problems: list[str] = []
    ids: set[str] = set()
    for i, block in enumerate(blocks):
        problems += _block(f"{where}[{i}]", block)
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > 255 or block_id in ids:
                problems.append(f"{where}[{i}].block_id: invalid or repeated")
            ids.add(str(block_id))
    return problems


def _block(where: str, block: Any) -> list[str]:
    if not isinstance(block, dict) or block.get("type") not in BLOCK_KEYS:
        return [f"{where}: unknown block type"]
    kind = block["type"]
    problems = [f"{where}.{k}: unexpected field" for k in block if k not in BLOCK_KEYS[kind]]
    if kind == "header":
        problems += _text(f"{where}.text", block.get("text"), 150, plain_only=True)
    elif kind == "section":
        problems += _section(where, block)
    elif kind == "context":
        problems += _elements(where, block.get("elements"), 10, _context_element)
    elif kind == "actions":
        problems += _elements(where, block.get("elements"), 25, _button)
    elif kind == "image" and (not block.get("image_url") or not block.get("alt_text")):
        problems.append(f"{where}: image_url and alt_text are required")
    return problems


def _section(where: str, block: dict[str, Any]) -> list[str]:
    if "text" not in block and "fields" not in block:
        return [f"{where}: a section needs text or fields"]
    problems: list[str] = []
    if "text" in block:
        problems += _text(f"{where}.text", block["text"], 3000)
    if "fields" in block:
        fields = block["fields"]
        if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
            return [*problems, f"{where}.fields: 1 to 10 text objects"]
        for i, item in enumerate(fields):
            problems += _text(f"{where}.fields[{i}]", item, 2000)
    if "accessory" in block:
        problems += _button(f"{where}.accessory", block["accessory"])
    return problems


def _elements(where: str, elements: Any, most: int, check: Any) -> list[str]:
    if not isinstance(elements, list) or not 1 <= len(elements) <= most:
        return [f"{where}.elements: 1 to {most} elements"]
    problems: list[str] = []
    for i, element in enumerate(elements):
        problems += check(f"{where}.elements[{i}]", element)
    return problems


def _context_element(where: str, element: Any) -> list[str]:
    if isinstance(element, dict) and element.get("type") == "image":
        ok = element.get("image_url") and element.get("alt_text")
        return [] if ok else [f"{where}: image_url and alt_text are required"]
    return _text(where, element, 3000)


def _button(where: str, button: Any) -> list[str]:
    if not isinstance(button, dict) or button.get("type") != "button":
        return [f"{where}: not a button"]
    problems = [f"{where}.{k}: unexpected field" for k in button if k not in BUTTON_KEYS]
    problems += _text(f"{where}.text", button.get("text"), 75, plain_only=True)
    for key, most in (("url", 3000), ("action_id", 255), ("value", 2000)):
        value = button.get(key)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= most):
            problems.append(f"{where}.{key}: a string of 1 to {most} characters")
    if button.get("style") not in (None, "primary", "danger"):
        problems.append(f"{where}.style: primary or danger")
    return problems


def _text(where: str, obj: Any, most: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: not a text object"]
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    problems = [f"{where}.{k}: unexpected field" for k in obj if k not in TEXT_KEYS]
    if kind not in allowed:
        problems.append(f"{where}.type: must be {' or '.join(allowed)}")
    text = obj.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= most:
        problems.append(f"{where}.text: a string of 1 to {most} characters")
    if "emoji" in obj and kind != "plain_text":
        problems.append(f"{where}.emoji: only for plain_text")
    if "verbatim" in obj and kind != "mrkdwn":
        problems.append(f"{where}.verbatim: only for mrkdwn")
    return problems


# ---- PagerDuty, Teams and Discord, as each checks a message ----------------------------------

PAGERDUTY_ACTIONS = {"trigger", "acknowledge", "resolve"}
PAGERDUTY_SEVERITIES = {"critical", "error", "warning", "info"}
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _is_text(value: Any, most: int, least: int = 1) -> bool:
    return isinstance(value, str) and least <= len(value) <= most


def pagerduty_problems(event: Any) -> list[str]:
    """What the Events API v2 would reject in an event (empty when it is acceptable)."""
    if not isinstance(event, dict):
        return ["event: not an object"]
    problems = []
    if not _is_text(event.get("routing_key"), 32, 32):
        problems.append("routing_key: not 32 characters")
    action = event.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        problems.append(f"event_action: {action!r} is not one of {sorted(PAGERDUTY_ACTIONS)}")
    key = event.get("dedup_key")
    if key is not None and not _is_text(key, 255):
        problems.append("dedup_key: not a string of 1 to 255 characters")
    if action in {"acknowledge", "resolve"} and key is None:
        problems.append(f"dedup_key: required to {action}")
    if action == "trigger":
        problems += _pagerduty_payload(event.get("payload"))
    for i, link in enumerate(event.get("links") or []):
        if not (isinstance(link, dict) and _is_text(link.get("href"), 2048)):
            problems.append(f"links[{i}]: needs an href")
    return problems


def _pagerduty_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["payload: required to trigger"]
    problems = []
    if not _is_text(payload.get("summary"), 1024):
        problems.append("payload.summary: not a string of 1 to 1024 characters")
    if not _is_text(payload.get("source"), 255):
        problems.append("payload.source: missing")
    if payload.get("severity") not in PAGERDUTY_SEVERITIES:
        problems.append(f"payload.severity: not one of {sorted(PAGERDUTY_SEVERITIES)}")
    stamp = payload.get("timestamp")
    if stamp is not None and not (isinstance(stamp, str) and ISO_TIME.fullmatch(stamp)):
        problems.append("payload.timestamp: not an ISO 8601 time")
    details = payload.get("custom_details")
    if details is not None and not isinstance(details, dict | list | str):
        problems.append("payload.custom_details: not an object")
    return problems


TEAMS_MAX_BYTES = 28 * 1024
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSIONS = {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"}
CARD_ELEMENTS = {"TextBlock", "FactSet", "Container", "ColumnSet", "Image", "RichTextBlock"}
CARD_ACTIONS = {"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility",
                "Action.Execute"}  # fmt: skip


def adaptive_card_problems(message: Any) -> list[str]:
    """What Teams would refuse in a message carrying Adaptive Cards (empty when acceptable)."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return ['message: type is not "message"']
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments: none"]
    problems = []
    for i, attachment in enumerate(attachments):
        where = f"attachments[{i}]"
        if not isinstance(attachment, dict) or attachment.get("contentType") != CARD_TYPE:
            problems.append(f"{where}.contentType: not {CARD_TYPE}")
            continue
        problems += _card(f"{where}.content", attachment.get("content"))
    return problems


def _card(where: str, card: Any) -> list[str]:
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return [f"{where}.type: not AdaptiveCard"]
    problems = []
    if card.get("version") not in CARD_VERSIONS:
        problems.append(f"{where}.version: {card.get('version')!r} is not supported")
    schema = card.get("$schema")
    if schema is not None and "adaptivecards.io/schemas/adaptive-card.json" not in schema:
        problems.append(f"{where}.$schema: not the Adaptive Card schema")
    body = card.get("body")
    if not isinstance(body, list) or not body:
        return [*problems, f"{where}.body: empty"]
    for i, element in enumerate(body):
        problems += _card_element(f"{where}.body[{i}]", element)
    for i, action in enumerate(card.get("actions") or []):
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in CARD_ACTIONS:
            problems.append(f"{where}.actions[{i}]: unknown action {kind!r}")
        elif kind == "Action.OpenUrl" and not re.match(r"https?://", str(action.get("url"))):
            problems.append(f"{where}.actions[{i}].url: not an http(s) URL")
    return problems


def _card_element(where: str, element: Any) -> list[str]:
    kind = element.get("type") if isinstance(element, dict) else None
    if kind not in CARD_ELEMENTS:
        return [f"{where}: unknown element {kind!r}"]
    if kind == "TextBlock" and not _is_text(element.get("text"), 1_000_000):
        return [f"{where}.text: missing"]
    if kind == "FactSet":
        facts = element.get("facts")
        good = isinstance(facts, list) and all(
            isinstance(f, dict) and isinstance(f.get("title"), str)
            and isinstance(f.get("value"), str) for f in facts
        )  # fmt: skip
        if not good:
            return [f"{where}.facts: not a list of {{title, value}} strings"]
    return []


DISCORD_LIMITS = {"content": 2000, "embeds": 10, "total": 6000, "title": 256,
                  "description": 4096, "fields": 25, "name": 256, "value": 1024, "footer": 2048,
                  "author": 256}  # fmt: skip


def discord_problems(message: Any) -> list[str]:
    """What Discord would reject in a webhook message (empty when it is acceptable)."""
    if not isinstance(message, dict):
        return ["message: not an object"]
    limits, problems = DISCORD_LIMITS, []
    content, embeds = message.get("content"), message.get("embeds") or []
    if content is not None and not _is_text(content, limits["content"], 0):
        problems.append(f"content: more than {limits['content']} characters")
    if not content and not embeds:
        problems.append("message: no content and no embeds")
    if not isinstance(embeds, list) or len(embeds) > limits["embeds"]:
        return [*problems, f"embeds: not a list of at most {limits['embeds']}"]
    total = 0
    for i, embed in enumerate(embeds):
        found, chars = _embed(f"embeds[{i}]", embed)
        problems, total = problems + found, total + chars
    if total > limits["total"]:
        problems.append(f"embeds: {total} characters, more than {limits['total']}")
    return problems


def _embed(where: str, embed: Any) -> tuple[list[str], int]:
    if not isinstance(embed, dict):
        return [f"{where}: not an object"], 0
    limits, problems, texts = DISCORD_LIMITS, [], []
    for name in ("title", "description"):
        if name in embed:
            texts.append(embed[name])
            if not _is_text(embed[name], limits[name]):
                problems.append(f"{where}.{name}: not 1 to {limits[name]} characters")
    for name, key in (("footer", "text"), ("author", "name")):
        if name in embed:
            text = embed[name].get(key) if isinstance(embed[name], dict) else None
            texts.append(text if isinstance(text, str) else "")
            if not _is_text(text, limits[name]):
                problems.append(f"{where}.{name}.{key}: not 1 to {limits[name]} characters")
    fields = embed.get("fields") or []
    if len(fields) > limits["fields"]:
        problems.append(f"{where}.fields: more than {limits['fields']}")
    for j, field_ in enumerate(fields):
        for key in ("name", "value"):
            text = field_.get(key) if isinstance(field_, dict) else None
            texts.append(text if isinstance(text, str) else "")
            if not _is_text(text, limits[key]):
                problems.append(f"{where}.fields[{j}].{key}: not 1 to {limits[key]} characters")
    color = embed.get("color")
    if color is not None and not (isinstance(color, int) and 0 <= color <= 0xFFFFFF):
        problems.append(f"{where}.color: not an RGB integer")
    stamp = embed.get("timestamp")
    if stamp is not None and not (isinstance(stamp, str) and ISO_TIME.fullmatch(stamp)):
        problems.append(f"{where}.timestamp: not an ISO 8601 time")
    if "url" in embed and not re.match(r"https?://", str(embed["url"])):
        problems.append(f"{where}.url: not an http(s) URL")
    return problems, sum(len(t) for t in texts if isinstance(t, str))


# ---- Notifications to deliver ----------------------------------------------------------------


def sample_payload(event_type: str = "workflow.execution.completed", **data: Any) -> dict[str, Any]:
    """A delivery payload of contract section 6 as the dispatcher decodes it from the topic."""
    base: dict[str, Any] = {
        "workflowId": "wf_1", "workflowName": "Nightly report", "executionId": "exe_42",
        "status": "error", "level": "error", "trigger": "api",
        "startedAt": "2026-03-01T12:00:03.250Z", "endedAt": "2026-03-01T12:00:05.250Z",
        "totalDurationMs": 2000, "cost": {"total": 0.01234, "input": 0.001, "output": 0.01134},
        "files": None,
    }  # fmt: skip
    return {
        "id": "evt_k3yq5vqbm2x7", "type": event_type, "timestamp": 1772366405250,
        "data": {**base, **data},
        "links": {"log": "/v1/logs/log_7f3a", "execution": "/v1/logs/executions/exe_42"},
    }  # fmt: skip


def notification(
    kind: NotificationType = "webhook",
    payload: Any = None,
    destination: Mapping[str, Any] | None = None,
    delivery_id: str = "dlv_4t7bq2m5x9c3",
) -> NotificationRecord:
    """A `NotificationRecord` of one channel, typed as the dispatcher decodes it from the topic."""
    body = sample_payload() if payload is None else payload
    return NotificationRecord(
        v=1, deliveryId=delivery_id, eventId="evt_k3yq5vqbm2x7", subscriptionId="ntf_9",
        projectId="prj_1", notificationType=kind,
        destination=msgspec.convert({"type": kind, **(destination or {})}, Destination),
        payload=msgspec.convert(body, DeliveryPayload), createdAtMs=1772366405300,
    )  # fmt: skip

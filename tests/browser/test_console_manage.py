"""The console's management pages against a stack of this module's own, with real receivers: the
quick start (a key generated, its secret copied once and working, then revoked), each kind of
subscription created from the Logs page with a rule and tested into its receiver, a viewer who
cannot write, and screenshots of every page in both colour schemes."""

import json
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.browser.helpers import expect, screenshot
from tests.e2e.helpers import call, eventually, post_events
from tests.factories import completed
from tests.processes import CLI, Stack, running_stack, service_env
from tests.receivers import (
    DiscordReceiver,
    HttpReceiver,
    PagerDutyReceiver,
    SlackReceiver,
    SmtpReceiver,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WORKFLOW = f"wf-billing-{secrets.token_hex(3)}"
VIEWER = ("viewer@example.com", "viewer-password-1234")


class Receivers:
    """The destinations of this module: a webhook, Slack-, PagerDuty- and Discord-like ones and
    an SMTP server."""

    def __init__(self) -> None:
        self.webhook = HttpReceiver()
        self.slack = SlackReceiver()
        self.smtp = SmtpReceiver()
        self.pagerduty = PagerDutyReceiver()
        self.discord = DiscordReceiver()


@pytest.fixture(scope="module")
async def receivers() -> AsyncIterator[Receivers]:
    found = Receivers()
    async with found.webhook, found.slack, found.smtp, found.pagerduty, found.discord:
        yield found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receivers: Receivers) -> Iterator[Stack]:
    """A stack that may deliver to loopback receivers, with the test SMTP server and one
    workflow that has run."""
    settings = {
        "CC_EGRESS_ALLOW_CIDRS": "127.0.0.0/8",
        "CC_SMTP_URL": receivers.smtp.url,
        "CC_EMAIL_FROM": "alerts@codecourier.test",
        "CC_PAGERDUTY_URL": receivers.pagerduty.url,
    }
    with running_stack(tmp_path_factory.mktemp("manage") / "data", settings) as running:
        yield running


@pytest.fixture(scope="module")
async def seeded(stack: Stack) -> str:
    """A workflow with executions, so that subscriptions can name it."""
    events = [
        completed(f"exec-{WORKFLOW}-{i}", WORKFLOW, workflowName="Billing sync") for i in range(3)
    ]
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_events(session, stack, stack.api_key, events)
        assert status == 202, body

        async def stored() -> bool:
            url = f"{stack.base_url}/api/v1/logs?workflowIds={WORKFLOW}"
            _, _, page = await call(session, "GET", url, stack.api_key)
            return len(page["data"]) == 3

        await eventually(stored, 60)
    return WORKFLOW


def _console(stack: Stack) -> dict[str, str]:
    local = json.loads((stack.data_dir / "local.json").read_text())
    return dict(local["console"])


async def signed_in(
    page: "Page", stack: Stack, path: str, who: tuple[str, str] | None = None
) -> None:
    """Sign in through the form (the console owner unless `who`), then be at `path`."""
    console = _console(stack)
    email, password = who or (console["email"], console["password"])
    await page.goto(stack.base_url + path)
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(page).to_have_url(re.compile(re.escape(path) + "$"))


async def _whoami(stack: Stack, secret: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{stack.base_url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}
        ) as response,
    ):
        return response.status, await response.json()


async def test_quick_start_key_is_shown_once_works_and_is_revoked(
    page: "Page", stack: Stack
) -> None:
    await page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=stack.base_url
    )
    await signed_in(page, stack, "/keys")
    await page.get_by_role("button", name="Generate new key").click()
    await page.get_by_label("Name").fill("quickstart")
    for scope in ("projects:read", "workflows:read", "runs:read"):
        await page.get_by_label(scope, exact=True).check()
    await page.get_by_role("button", name="Create key").click()
    panel = page.get_by_role("region", name=re.compile("Secret of"))
    await expect(panel).to_contain_text("it will not be shown again")
    await panel.get_by_role("button", name="Copy secret").click()
    await expect(panel.get_by_role("button", name="Copy secret")).to_have_text("Copied")
    secret = await page.evaluate("navigator.clipboard.readText()")
    assert secret.startswith("cc_live_")
    assert await panel.locator("code").first.inner_text() == secret

    status, body = await _whoami(stack, secret)
    assert status == 200, body
    assert body["data"]["name"] == "quickstart"
    assert body["data"]["scopes"] == ["projects:read", "runs:read", "workflows:read"]

    row = page.get_by_role("row", name=re.compile("quickstart"))
    await expect(row).to_contain_text("runs:read")
    await screenshot(page, "keys")
    await page.reload()
    await expect(page.get_by_role("row", name=re.compile("quickstart"))).to_be_visible()
    await expect(page.get_by_text(secret)).to_have_count(0)

    await page.get_by_role("button", name="Revoke quickstart").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("cannot be undone")
    await dialog.get_by_role("button", name="Revoke key").click()
    await expect(page.get_by_role("row", name=re.compile("quickstart"))).to_have_count(0)
    status, body = await _whoami(stack, secret)
    assert status == 401, body
    assert body["error"]["code"] == "UNAUTHENTICATED"


async def _send_test_from_detail(page: "Page") -> None:
    await page.get_by_role("link", name="Open the notification").click()
    await page.get_by_role("button", name="Send test").click()
    await expect(page.get_by_text(re.compile(r"Test\s+delivered"))).to_be_visible(timeout=60_000)
    # the outcome is in the delivery log too, with its attempt
    await expect(page.locator("details.delivery").first).to_contain_text("delivered")


async def test_each_kind_of_subscription_is_created_from_logs_and_tested(
    page: "Page", stack: Stack, seeded: str, receivers: Receivers
) -> None:
    await signed_in(page, stack, f"/logs?workflowIds={seeded}")
    await page.get_by_role("button", name="More", exact=True).click()
    await page.get_by_role("menuitem", name="Configure notifications").click()
    await expect(page).to_have_url(
        re.compile(r"/notifications/new\?.*workflowIds=" + re.escape(seeded))
    )
    await expect(page.get_by_label(re.compile(re.escape(seeded)))).to_be_checked()
    await expect(page.get_by_label("All workflows, including future ones")).not_to_be_checked()

    # a webhook with a rule: bounds and default come from the API's documentation
    await page.get_by_label("Webhook URL", exact=True).fill(receivers.webhook.url)
    await page.get_by_label("Alert rule").select_option(label="Consecutive failures")
    failures = page.get_by_label("Failures in a row")
    await expect(failures).to_have_value("3")
    assert await failures.get_attribute("min") == "1"
    assert await failures.get_attribute("max") == "100"
    await failures.fill("2")
    await screenshot(page, "notification-form")
    await page.get_by_role("button", name="Create notification").click()
    secret_panel = page.get_by_role("region", name="Signing secret")
    await expect(secret_panel).to_contain_text("it will not be shown again")
    signing = await secret_panel.locator("code").first.inner_text()
    assert signing.startswith("whsec_")
    await _send_test_from_detail(page)
    [request] = receivers.webhook.requests
    assert request.json()["test"] is True
    assert request.headers["sim-signature"].startswith("t=")
    await screenshot(page, "notification")

    # an email to the test SMTP server, errors counted per hour by default
    await page.goto(stack.base_url + "/notifications/new")
    await page.get_by_label("Email", exact=True).check()
    await page.get_by_label("Recipients").fill("oncall@example.com")
    await page.get_by_label("All workflows, including future ones").check()
    await page.get_by_label("Alert rule").select_option(label="Error count")
    await expect(page.get_by_label("Window (hours)")).to_have_value("1")
    await page.get_by_role("button", name="Create notification").click()
    await expect(page.get_by_role("heading", name="Notification created")).to_be_visible()
    await expect(page.get_by_role("region", name="Signing secret")).to_have_count(0)
    await _send_test_from_detail(page)
    assert receivers.smtp.mails[-1].recipients == ["oncall@example.com"]

    # Slack to a local incoming webhook
    await page.goto(stack.base_url + f"/notifications/new?workflowIds={seeded}")
    await page.get_by_label("Slack", exact=True).check()
    await page.get_by_label("Slack incoming webhook URL").fill(receivers.slack.url)
    await page.get_by_label("Channel name (optional)").fill("alerts-billing")
    await page.get_by_label("Alert rule").select_option(label="No activity")
    await page.get_by_label("No execution for (hours)").fill("12")
    await page.get_by_role("button", name="Create notification").click()
    await _send_test_from_detail(page)
    assert [r.problems for r in receivers.slack.requests] == [[]]

    # PagerDuty needs a rule; Discord to a local channel webhook
    await page.goto(stack.base_url + f"/notifications/new?workflowIds={seeded}")
    await page.get_by_label("PagerDuty", exact=True).check()
    await page.get_by_label("Routing key").fill("R0123456789abcdef0123456789ABCDE")
    await page.get_by_role("button", name="Create notification").click()
    await expect(page.locator(".field-error")).to_contain_text("choose a rule")
    await page.get_by_label("Alert rule").select_option(label="Latency threshold")
    await page.get_by_role("button", name="Create notification").click()
    await _send_test_from_detail(page)
    assert [r.problems for r in receivers.pagerduty.requests] == [[]]
    await page.goto(stack.base_url + f"/notifications/new?workflowIds={seeded}")
    await page.get_by_label("Discord", exact=True).check()
    await page.get_by_label("Discord webhook URL").fill(receivers.discord.url)
    await page.get_by_role("button", name="Create notification").click()
    await _send_test_from_detail(page)
    assert [r.problems for r in receivers.discord.requests] == [[]]

    # the list shows all five with their rules and latest outcomes, no secret anywhere
    await page.get_by_role("link", name="All notifications").click()
    table = page.get_by_role("table", name="Notification subscriptions")
    await expect(table.get_by_role("row")).to_have_count(6)
    await expect(table).to_contain_text("Consecutive failures (2)")
    await expect(table).to_contain_text("#alerts-billing")
    await expect(table.get_by_text("delivered", exact=True)).to_have_count(5)
    assert "null" not in await table.inner_text()
    assert signing not in await page.content()
    assert "B0RECEIVER" not in await page.content()  # the Slack URL is a secret
    assert "DiscordSecretToken" not in await page.content()
    assert "R0123456789abcdef" not in await page.content()
    await screenshot(page, "notifications")

    # the server's field errors land next to their field
    await page.goto(stack.base_url + "/notifications/new")
    await page.get_by_label("Webhook URL", exact=True).fill("http://10.0.0.1/hook")  # private
    await page.get_by_role("button", name="Create notification").click()
    url_field = page.get_by_label("Webhook URL", exact=True)
    await expect(url_field).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(".field-error")).to_be_visible()

    await page.goto(stack.base_url + "/alerts")
    # test sends are not alerts: none has fired yet
    await expect(page.get_by_text("No alerts yet")).to_be_visible()
    await expect(
        page.get_by_text("Acknowledging one stops its repeat notifications")
    ).to_be_visible()
    await page.get_by_label("Alert state").select_option("firing")
    await expect(page).to_have_url(re.compile(r"/alerts\?state=firing$"))
    await expect(page.get_by_text("No firing alerts")).to_be_visible()
    await screenshot(page, "alerts")


async def test_settings_show_the_project_limits_and_members(
    page: "Page", browser: "Browser", stack: Stack
) -> None:
    await signed_in(page, stack, "/settings")
    await expect(page.get_by_text(stack.project_id)).to_be_visible()
    await expect(
        page.get_by_role("meter", name="This month's usage against the plan's limit")
    ).to_be_visible()
    await expect(page.get_by_role("cell", name="Sync executions", exact=True)).to_be_visible()
    members = page.get_by_role("table", name="Members")
    await expect(members).to_contain_text(_console(stack)["email"])
    await page.get_by_label("Email", exact=True).fill("new.colleague@example.com")
    await page.get_by_label("Role", exact=True).select_option("member")
    await page.get_by_role("button", name="Invite").click()
    link = page.get_by_role("region", name="Invitation link")
    await expect(link).to_contain_text("/invite#")
    await expect(page.get_by_role("table", name="Pending invitations")).to_contain_text(
        "new.colleague@example.com"
    )
    await screenshot(page, "settings")
    url = (await link.locator("code").inner_text()).strip()

    # The invitee, in a browser of their own: the link works once and signs them in as a member.
    context = await browser.new_context()
    try:
        invitee = await context.new_page()
        await invitee.goto(url)
        await expect(invitee.get_by_role("heading", name="Join local")).to_be_visible()
        await invitee.get_by_label("Password").fill("colleague-password-1234")
        await invitee.get_by_role("button", name="Accept invitation").click()
        await expect(invitee.get_by_role("navigation", name="Main")).to_be_visible()
        await expect(invitee.get_by_text("new.colleague@example.com")).to_be_visible()
        await expect(invitee.get_by_text("member", exact=True)).to_be_visible()
        await invitee.goto(url)
        await expect(invitee.get_by_text("Invitation not usable")).to_be_visible()
    finally:
        await context.close()


def _create_viewer(stack: Stack) -> None:
    env = service_env(stack.data_dir)
    done = subprocess.run(
        [CLI, "user", "create", "--email", VIEWER[0], "--project", stack.project_id, "--role", "viewer"],
        input=VIEWER[1] + "\n", env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_viewer_sees_no_usable_write_controls_and_the_api_refuses(
    page: "Page", stack: Stack
) -> None:
    _create_viewer(stack)
    await signed_in(page, stack, "/notifications", VIEWER)
    await expect(page.get_by_text("Viewers cannot change notifications.")).to_be_visible()
    await expect(page.get_by_role("button", name="New notification")).to_be_disabled()
    await expect(
        page.get_by_role("button", name=re.compile("^(Delete|Disable|Send test)"))
    ).to_have_count(0)
    status = await page.evaluate(
        """async () => {
          const csrf = document.cookie.split('; ').find((c) => c.startsWith('cc_csrf=')).slice(8);
          const response = await fetch('/api/v1/notifications', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': decodeURIComponent(csrf)},
            body: JSON.stringify({notificationType: 'email', allWorkflows: true,
                                  emailRecipients: ['x@example.com']})});
          return [response.status, (await response.json()).error.code];
        }"""
    )
    assert status[0] == 403, status
    await page.get_by_role("link", name="API keys").click()
    await expect(page.get_by_role("button", name="Generate new key")).to_be_disabled()
    await expect(page.get_by_role("button", name=re.compile("^Revoke"))).to_have_count(0)
    await page.get_by_role("link", name="Settings").click()
    await expect(page.get_by_text("Only owners can change roles")).to_be_visible()
    await expect(page.get_by_role("button", name="Invite")).to_have_count(0)

"""The console's read pages against a running stack, used the way people use them: signed in with
the console's credentials, finding controls by role and label. Logs filter through the URL (the
back button undoes a filter), an execution shows its trace waterfall with the failed span marked
and a span's input on click, and the Overview and Workflows pages show the project's data."""

import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.browser.helpers import expect, screenshot
from tests.e2e.helpers import call, eventually, post_events
from tests.factories import completed, iso
from tests.processes import Stack

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BULK = 110  # more than one page of the Logs table (100)

# When the Logs table first holds 100 rows (the mutation observer runs right after the change).
TIME_ROWS = """
new MutationObserver((_, observer) => {
  if (document.querySelectorAll('.logs-table tbody tr').length >= 100) {
    window.hundredRowsAt = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""


def _span(name: str, start: datetime, offset_ms: int, ms: int, **fields: Any) -> dict[str, Any]:
    began = start + timedelta(milliseconds=offset_ms)
    return {"name": name, "type": "function", "status": "success", "startTime": iso(began),
            "endTime": iso(began + timedelta(milliseconds=ms)), "duration": ms} | fields  # fmt: skip


def _failed_execution(execution_id: str, workflow_id: str) -> dict[str, Any]:
    """An execution whose CRM call failed, with nested spans and a model's cost."""
    ended = datetime.now(UTC) - timedelta(seconds=1)
    start = ended - timedelta(milliseconds=4000)
    tokens = {"prompt": 1200, "completion": 300, "total": 1500}
    spans = [_span("Triage", start, 0, 4000, type="workflow", children=[
        _span("Fetch ticket", start, 50, 600, input={"ticketId": 4242}, output={"subject": "Refund"}),
        _span("Classify", start, 700, 2100, type="agent", model="gpt-4o", children=[
            _span("LLM call", start, 750, 1900, type="model", model="gpt-4o", tokens=tokens),
        ]),
        _span("Post to CRM", start, 2900, 1000, status="error", error="CRM answered 502"),
    ])]  # fmt: skip
    cost = {"total": 0.0123, "input": 0.01, "output": 0.0023, "tokens": tokens,
            "models": {"gpt-4o": {"input": 0.01, "output": 0.0023, "total": 0.0123, "tokens": tokens}}}  # fmt: skip
    return completed(execution_id, workflow_id, ended=ended, duration_ms=4000, cost=cost,
                     level="error", status="error", trigger="webhook", workflowName="Support triage",
                     traceSpans=spans, finalOutput={"ok": False, "error": "CRM answered 502"},
                     workflowState={"blocks": {"a": {"type": "starter"}}, "edges": []})  # fmt: skip


@pytest.fixture(scope="module")
async def seeded(stack: Stack) -> dict[str, str]:
    """A workflow with three good executions and a failed one, and a busy workflow with more
    executions than a page; waits until the logs API lists them all."""
    tag = secrets.token_hex(3)
    ids = {"workflow": f"wf-triage-{tag}", "bulk": f"wf-bulk-{tag}", "failed": f"exec-fail-{tag}"}
    events = [completed(f"exec-ok-{tag}-{i}", ids["workflow"], workflowName="Support triage",
                        duration_ms=300 + i * 100) for i in range(3)]  # fmt: skip
    events.append(_failed_execution(ids["failed"], ids["workflow"]))
    events += [completed(f"exec-bulk-{tag}-{i:03d}", ids["bulk"], workflowName="Bulk import",
                         duration_ms=100 + i) for i in range(BULK)]  # fmt: skip
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_events(session, stack, stack.api_key, events)
        assert status == 202, body

        async def stored() -> bool:
            counts = []
            for workflow in (ids["workflow"], ids["bulk"]):
                url = f"{stack.base_url}/api/v1/logs?workflowIds={workflow}&limit=1000"
                _, _, page = await call(session, "GET", url, stack.api_key)
                counts.append(len(page["data"]))
            return counts == [4, BULK]

        await eventually(stored, 60)
    return ids


async def signed_in(page: "Page", stack: Stack, path: str = "/") -> None:
    """Sign in through the form with the console's credentials, then open `path`."""
    local = json.loads((stack.data_dir / "local.json").read_text())
    await page.goto(stack.base_url + path)
    await page.get_by_label("Email").fill(local["console"]["email"])
    await page.get_by_label("Password").fill(local["console"]["password"])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(page).to_have_url(re.compile(re.escape(path) + "$"))


async def test_a_level_filter_lives_in_the_url_and_back_undoes_it(
    page: "Page", stack: Stack, seeded: dict[str, str]
) -> None:
    await signed_in(page, stack, f"/logs?workflowIds={seeded['workflow']}")
    rows = page.locator(".logs-table tbody tr")
    await expect(rows).to_have_count(4)
    await expect(page.get_by_label("Workflow")).to_have_value(seeded["workflow"])

    await page.get_by_label("Level").select_option("error")
    await expect(page).to_have_url(re.compile(r"[?&]level=error"))
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(seeded["failed"])
    await expect(rows.first).to_contain_text("error")
    await screenshot(page, "logs")

    await page.go_back()
    await expect(page).not_to_have_url(re.compile(r"level="))
    await expect(page.get_by_label("Level")).to_have_value("")
    await expect(rows).to_have_count(4)


async def test_logs_page_through_a_hundred_rows_and_more(
    page: "Page", stack: Stack, seeded: dict[str, str]
) -> None:
    await page.add_init_script(TIME_ROWS)
    await signed_in(page, stack, f"/logs?workflowIds={seeded['bulk']}")
    rows = page.locator(".logs-table tbody tr")
    await expect(rows).to_have_count(100)
    # The first page was on screen within 300 ms of its answer arriving.
    elapsed = await page.evaluate("""() => {
      const logs = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/v1/logs?'));
      return window.hundredRowsAt - logs[0].responseEnd;
    }""")
    assert 0 < elapsed < 300
    await page.get_by_role("button", name="Load more").click()
    await expect(rows).to_have_count(BULK)
    await expect(page.get_by_role("button", name="Load more")).to_be_hidden()

    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="More").click()
        await page.get_by_role("menuitem", name=re.compile("Export CSV")).click()
    download = await waiting.value
    assert download.suggested_filename.endswith(".csv")
    lines = (await download.path()).read_text().strip().splitlines()
    assert lines[0].startswith("id,executionId,workflowId") and len(lines) == BULK + 1


async def test_the_more_menu_works_by_keyboard_and_configures_notifications(
    page: "Page", stack: Stack, seeded: dict[str, str]
) -> None:
    await signed_in(page, stack, f"/logs?workflowIds={seeded['workflow']}")
    more = page.get_by_role("button", name="More")
    await more.focus()
    await page.keyboard.press("ArrowDown")
    await expect(page.get_by_role("menuitem", name="Configure notifications")).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await expect(page.get_by_role("menuitem", name=re.compile("Export CSV"))).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("menu")).to_be_hidden()
    await expect(more).to_be_focused()
    await page.keyboard.press("Enter")
    await page.get_by_role("menuitem", name="Configure notifications").click()
    await expect(page).to_have_url(
        re.compile(
            r"/notifications/new\?from=logs&workflowIds=" + re.escape(seeded["workflow"]) + "$"
        )
    )


async def test_an_execution_shows_its_waterfall_with_the_error_and_a_spans_input(
    page: "Page", stack: Stack, seeded: dict[str, str]
) -> None:
    await signed_in(page, stack, f"/logs?workflowIds={seeded['workflow']}&level=error")
    await page.get_by_role("link", name=seeded["failed"]).click()
    await expect(page).to_have_url(re.compile(f"/executions/{seeded['failed']}$"))
    await expect(page.get_by_role("heading", name="Execution of Support triage")).to_be_visible()
    waterfall = page.get_by_role("group", name=re.compile("Trace spans"))
    await expect(waterfall.get_by_role("button")).to_have_count(5)
    failed = waterfall.get_by_role("button", name=re.compile("Error: Post to CRM"))
    await expect(failed).to_have_class(re.compile("error"))
    await expect(page.get_by_role("table", name="Cost and tokens per model")).to_contain_text(
        "gpt-4o"
    )

    await waterfall.get_by_role("button", name=re.compile("Fetch ticket")).click()
    panel = page.get_by_role("complementary", name="Fetch ticket")
    await expect(panel).to_contain_text("ticketId")
    await expect(panel).to_contain_text("4242")
    await failed.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("complementary", name="Post to CRM")).to_contain_text(
        "CRM answered 502"
    )
    await screenshot(page, "execution")

    await page.get_by_role("link", name="Alert on this workflow").click()
    await expect(page).to_have_url(
        re.compile(f"/notifications/new\\?workflowIds={seeded['workflow']}$")
    )


async def test_an_unknown_execution_is_a_friendly_not_found(page: "Page", stack: Stack) -> None:
    await signed_in(page, stack, "/executions/exec-that-never-ran")
    await expect(page.get_by_role("heading", name="Execution not found")).to_be_visible()
    await expect(page.get_by_text("Request ID")).to_be_visible()


async def test_overview_and_workflows_show_the_data(
    page: "Page", stack: Stack, seeded: dict[str, str]
) -> None:
    await signed_in(page, stack, "/")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.get_by_role("img", name=re.compile("^Executions:"))).to_be_visible()
    await expect(page.get_by_role("img", name=re.compile("^Duration:"))).to_be_visible()
    await expect(page.get_by_role("link", name="Support triage")).to_be_visible()
    await page.get_by_role("button", name="7 d").click()
    await expect(page).to_have_url(re.compile(r"\?range=7d$"))
    await expect(page.get_by_role("button", name="7 d")).to_have_attribute("aria-pressed", "true")
    await page.get_by_role("button", name="24 h").click()
    await expect(page.get_by_role("button", name="24 h")).to_have_attribute("aria-pressed", "true")
    await screenshot(page, "overview")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    table = page.get_by_role("table", name="Workflows")
    await expect(table.get_by_role("link", name="Bulk import")).to_be_visible()
    await expect(table.get_by_role("row", name=re.compile(seeded["workflow"]))).to_contain_text(
        "25%"
    )
    await screenshot(page, "workflows")

    await table.get_by_role("link", name="Support triage").click()
    await expect(page.get_by_role("heading", name="Support triage")).to_be_visible()
    await expect(
        page.get_by_role("table", name="Latest executions").locator("tbody tr")
    ).to_have_count(4)
    await screenshot(page, "workflow")
    await page.get_by_role("link", name="View all logs").click()
    await expect(page).to_have_url(re.compile(f"/logs\\?workflowIds={seeded['workflow']}$"))
    await expect(page.locator(".logs-table tbody tr")).to_have_count(4)

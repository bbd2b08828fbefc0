"""Auto-disable: every minute, turn off subscriptions whose deliveries have ended only in failure
for `CC_AUTO_DISABLE_HOURS` (at least 10 of them), and tell the project's owners by email.

Safe with any number of API replicas without a lock: the disable is an optimistic update on the
row's version (the one `PATCH` uses), so of two replicas deciding together exactly one changes
the row, and only the one that changed it announces it.

The email is owed durably: the disable writes, in the same row, when the owners are to be told
(`owner_notice_due_ms`). Each pass sends the notices due; a replica takes one by moving its due
time on (an update conditional on the time it read, so two replicas never send the same one),
clears it once the SMTP server accepted the email, and otherwise tries again later, at
intervals growing from a minute to an hour, for a day. A subscription set active again meanwhile,
or without owners or SMTP, is owed nothing. A crash after the server accepted the email and
before the notice is cleared sends it once more (the same `Message-ID`).
"""

import asyncio
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import msgspec
import structlog

from services.api.deps import Deps
from services.api.health import Summary, disabled_reason, should_disable, summaries
from services.api.notifications import announce
from services.api.outbox import publish_now
from services.common.clock import now_ms
from services.common.controlplane import SubscriptionRow
from services.common.smtp import smtp_server, submit, tls_context
from services.common.subscriptions import config_of

log = structlog.get_logger(__name__)

PERIOD_S = 60.0
PAGE = 500
EMAIL_TIMEOUT_S = 30.0
NOTICE_RETRY_MIN_MS = 60_000
NOTICE_RETRY_MAX_MS = 3_600_000
NOTICE_GIVE_UP_MS = 24 * 3_600_000


async def run_auto_disable(deps: Deps, period_s: float = PERIOD_S) -> None:
    """Check forever, once a period; errors are logged and the next period tries again."""
    while True:
        try:
            await disable_failing(deps)
        except Exception:
            log.warning("autodisable.failed", exc_info=True)
        await asyncio.sleep(period_s)


async def disable_failing(deps: Deps) -> list[SubscriptionRow]:
    """One pass over every enabled subscription; the ones this call disabled."""
    at, after, disabled = now_ms(deps.clock), None, []
    limits = deps.settings.query_limits_for("health")
    while rows := await deps.controlplane.enabled_subscriptions(PAGE, after):
        after = rows[-1].id
        watched = [r for r in rows if config_of(r).active]
        pairs = [(r.project_id, r.id) for r in watched]
        found = await summaries(deps.clickhouse, pairs, at, limits)
        hours = deps.settings.auto_disable_hours
        due = [(r, found[r.id]) for r in watched if should_disable(found.get(r.id), at, hours)]
        for row, summary in due:
            if (done := await _disable(deps, row, summary, at)) is not None:
                disabled.append(done)
        if len(rows) < PAGE:
            break
    if disabled:
        await publish_now(deps)  # the engine and the dispatcher stop before anyone is told
    await send_owner_notices(deps)
    return disabled


async def _disable(
    deps: Deps, row: SubscriptionRow, summary: Summary, at: int
) -> SubscriptionRow | None:
    """Disable a subscription unless it changed since it was read; the disabled row, or None."""
    disabled = msgspec.structs.replace(
        row, disabled_reason=disabled_reason(summary, at), version=row.version + 1,
        updated_at_ms=max(at, row.updated_at_ms + 1), owner_notice_due_ms=at,
    )  # fmt: skip
    if not await deps.controlplane.save_subscription(
        disabled, await announce(deps, disabled), create=False
    ):
        return None
    log.warning("autodisable.disabled", subscription=row.id, project=row.project_id)
    return disabled


def notice(row: SubscriptionRow, owners: list[str], sender: str) -> EmailMessage:
    """The email telling a project's owners that a subscription was disabled."""
    message = EmailMessage()
    message["Subject"] = f"Notification subscription {row.id} was disabled"
    message["From"] = sender
    message["To"] = ", ".join(owners)
    message["Message-ID"] = f"<disabled-{row.id}-{row.version}@codecourier>"
    message["Auto-Submitted"] = "auto-generated"
    message["Date"] = formatdate(usegmt=True)
    message.set_content(
        f"The {row.notification_type} subscription {row.id} of project {row.project_id} was "
        f"disabled.\n\n{row.disabled_reason}\n\nIt delivers nothing until it is set active "
        "again; its failed deliveries can then be sent again with "
        f"POST /api/v1/notifications/{row.id}/recover.\n"
    )
    return message


def notice_retry_ms(age_ms: int) -> int:
    """How long to wait before telling the owners again, `age_ms` after the disable."""
    return min(NOTICE_RETRY_MAX_MS, max(NOTICE_RETRY_MIN_MS, age_ms))


async def send_owner_notices(deps: Deps) -> int:
    """Send the owner notices that are due; how many the SMTP server accepted."""
    at = now_ms(deps.clock)
    sent = 0
    for row in await deps.controlplane.owner_notices_due(at, PAGE):
        sent += await _tell_owners(deps, row, at)
    return sent


async def _tell_owners(deps: Deps, row: SubscriptionRow, at: int) -> bool:
    """Email the project's owners that `row` was disabled, if they are still owed it."""
    settings, controlplane, smtp_url = deps.settings, deps.controlplane, deps.settings.smtp_url
    age_ms = at - row.updated_at_ms  # the disable's time while the subscription stays off
    owed = bool(row.disabled_reason)  # set active again (which clears it): owed nothing
    owners = [m.email for m in await controlplane.list_members(row.project_id)
              if m.role == "owner"] if owed and smtp_url else []  # fmt: skip
    if not smtp_url or not owners or age_ms > NOTICE_GIVE_UP_MS:
        if owners:
            log.warning("autodisable.email_abandoned", subscription=row.id)
        await controlplane.move_owner_notice(row, None)
        return False
    retry_at = at + notice_retry_ms(age_ms)
    if not await controlplane.move_owner_notice(row, retry_at):
        return False  # another replica took it
    try:
        await submit(
            notice(row, owners, settings.email_from), sender=parseaddr(settings.email_from)[1],
            recipients=owners, server=smtp_server(smtp_url),
            tls=tls_context(settings.smtp_ca_file), timeout_s=EMAIL_TIMEOUT_S,
        )  # fmt: skip
    except Exception as exc:
        log.warning("autodisable.email_failed", subscription=row.id, error=type(exc).__name__,
                    retry_in_s=(retry_at - at) // 1000)  # fmt: skip
        return False
    await controlplane.move_owner_notice(msgspec.structs.replace(row, owner_notice_due_ms=retry_at),
                                         None)  # fmt: skip
    log.info("autodisable.email_sent", subscription=row.id, owners=len(owners))
    return True

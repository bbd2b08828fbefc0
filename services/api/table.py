"""The route table: every route of the API, in one list."""

from services.api import (
    admin,
    alerts,
    deliveries,
    events,
    identity,
    invitations,
    keys,
    logs,
    members,
    notifications,
    ops,
    runs,
    session,
    silences,
    stats,
    workflows,
)
from services.api.routing import Route

ROUTES: list[Route] = [
    *ops.ROUTES,
    *identity.ROUTES,
    *keys.ROUTES,
    *admin.ROUTES,
    *events.ROUTES,
    *logs.ROUTES,
    *workflows.ROUTES,
    *runs.ROUTES,
    *stats.ROUTES,
    *notifications.ROUTES,
    *deliveries.ROUTES,
    *silences.ROUTES,
    *alerts.ROUTES,
    *session.ROUTES,
    *members.ROUTES,
    *invitations.ROUTES,
]

"""Routes: `/api/v1/whoami` and `/api/v1/project`."""

from schemas.api import Project, WhoAmI
from services.api.routing import Call, Route
from services.api.views import project_view, whoami_view
from services.common.errors import NotFound


async def whoami(call: Call) -> WhoAmI:
    """Describe the calling key."""
    key = call.principal
    return whoami_view(key, call.deps.auth.last_used_at(key))


async def project(call: Call) -> Project:
    """Describe the calling key's project."""
    record = await call.deps.controlplane.get_project(call.principal.project_id)
    if record is None:
        raise NotFound("This key's project no longer exists.")
    return project_view(record)


ROUTES = [
    Route("GET", "/api/v1/whoami", whoami, "Describe the calling key", "identity", response=WhoAmI),
    Route(
        "GET",
        "/api/v1/project",
        project,
        "Describe the key's project",
        "identity",
        scope="projects:read",
        response=Project,
    ),
]

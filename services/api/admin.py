"""Operator routes under `/admin/v1`, guarded by `CC_ADMIN_TOKEN`."""

from schemas.api import (
    CreatedKey,
    CreateKeyBody,
    CreateProjectBody,
    PatchProjectBody,
    Project,
    ProjectCreated,
)
from services.api.keys import issue_key, requested_expiry
from services.api.routing import Call, Route
from services.api.views import project_view
from services.common.clock import now_ms
from services.common.errors import NotFound


async def create_project(call: Call) -> ProjectCreated:
    """Create a project and its first key, which holds every scope."""
    body: CreateProjectBody = call.body
    record = await call.deps.controlplane.create_project(
        body.name, body.plan, now_ms(call.deps.clock)
    )
    key = await issue_key(call.deps, record.id, "default", ["*"], None)
    return ProjectCreated(project=project_view(record), key=key)


async def patch_project(call: Call) -> Project:
    """Change a project's plan; its buckets follow at once."""
    body: PatchProjectBody = call.body
    project_id = call.path("projectId")
    record = await call.deps.controlplane.set_plan(project_id, body.plan)
    if record is None:
        raise NotFound(f"No project {project_id}.")
    call.deps.auth.forget_project(project_id)
    return project_view(record)


async def create_project_key(call: Call) -> CreatedKey:
    """Issue a key for an existing project (a way back in when its keys are lost or revoked)."""
    body: CreateKeyBody = call.body
    project_id = call.path("projectId")
    if await call.deps.controlplane.get_project(project_id) is None:
        raise NotFound(f"No project {project_id}.")
    expires_ms = requested_expiry(body, now_ms(call.deps.clock))
    return await issue_key(call.deps, project_id, body.name, list(body.scopes), expires_ms)


ROUTES = [
    Route(
        "POST",
        "/admin/v1/projects",
        create_project,
        "Create a project with an all-scopes key",
        "admin",
        auth="admin",
        body=CreateProjectBody,
        response=ProjectCreated,
        status=201,
    ),
    Route(
        "PATCH",
        "/admin/v1/projects/{projectId}",
        patch_project,
        "Change a project's plan",
        "admin",
        auth="admin",
        body=PatchProjectBody,
        response=Project,
    ),
    Route(
        "POST",
        "/admin/v1/projects/{projectId}/keys",
        create_project_key,
        "Issue an API key for an existing project (its secret is shown once)",
        "admin",
        auth="admin",
        body=CreateKeyBody,
        response=CreatedKey,
        status=201,
    ),
]

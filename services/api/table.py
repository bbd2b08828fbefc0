"""The route table: every route of the API, in one list."""

from services.api import admin, identity, keys, ops
from services.api.routing import Route

ROUTES: list[Route] = [*ops.ROUTES, *identity.ROUTES, *keys.ROUTES, *admin.ROUTES]

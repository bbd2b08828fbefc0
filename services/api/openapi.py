"""Generate the OpenAPI 3.1 document from the route table and the msgspec Structs."""

import functools
import json
import re
from typing import Any

import msgspec

from schemas.api import ErrorBody
from services.api.routing import Route
from services.api.table import ROUTES

_REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "VALIDATION_ERROR or INVALID_CURSOR",
    "401": "UNAUTHENTICATED",
    "403": "SCOPE_DENIED or FORBIDDEN",
    "404": "NOT_FOUND",
    "429": "RATE_LIMITED (see Retry-After)",
    "500": "INTERNAL",
    "503": "UNAVAILABLE (see Retry-After)",
}
_SESSION_NOTE = (
    "With a session cookie, a request other than GET/HEAD/OPTIONS needs `X-CSRF-Token` equal to "
    "the `cc_csrf` cookie; `X-Project-Id` chooses among the user's projects."
)
_BODY_ERRORS = {"413": "PAYLOAD_TOO_LARGE", "415": "UNSUPPORTED_MEDIA_TYPE"}


def _data_schema(
    route: Route, ref: dict[str, Any], refs: dict[type, dict[str, Any]]
) -> dict[str, Any]:
    if route.paged:
        extra = {name: refs[kind] for name, kind in route.extra_doc.items()}
        return {
            "type": "object",
            "required": ["data", "nextCursor", "hasMore", *extra],
            "properties": {
                "data": {"type": "array", "items": ref},
                "nextCursor": {"type": ["string", "null"]},
                "hasMore": {"type": "boolean"},
                **extra,
            },
        }
    return {"type": "object", "required": ["data"], "properties": {"data": ref}}


def _operation(route: Route, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": re.sub(r"\W+", "_", f"{route.method.lower()}{route.path}").strip("_"),
        "tags": [route.tag],
    }
    notes = []
    if route.scope:
        notes.append(f"Requires the `{route.scope}` scope.")
    if route.role:
        notes.append(f"Only a console session of an {route.role} of the project.")
    if route.auth in ("key", "session", "user"):
        notes.append(_SESSION_NOTE)
    if notes:
        op["description"] = " ".join(notes)
    if route.auth == "key":
        op["security"] = [{"bearer": []}, {"apiKey": []}, {"session": []}]
    elif route.auth in ("session", "user"):
        op["security"] = [{"session": []}]
    elif route.auth == "admin":
        op["security"] = [{"adminToken": []}]
    else:
        op["security"] = []
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    parameters += [
        {
            "name": p.name,
            "in": "query",
            "required": False,
            "schema": {"type": p.kind, **p.bounds},
            "description": p.description,
        }
        for p in route.params
    ]
    if parameters:
        op["parameters"] = parameters
    body = route.body or route.doc_body
    if body is not None:
        content = {"application/json": {"schema": refs[body]}}
        if route.doc_body is not None:
            content["application/x-ndjson"] = {"schema": {"type": "string"}}
        op["requestBody"] = {"required": True, "content": content}
    if route.response is not None:
        content = {"application/json": {"schema": _data_schema(route, refs[route.response], refs)}}
        success: dict[str, Any] = {"description": "Success", "content": content}
    else:
        success = {"description": "Success"}
    error = {"application/json": {"schema": refs[ErrorBody]}}
    errors = dict(_ERRORS)
    if route.body is not None or route.doc_body is not None:
        errors |= _BODY_ERRORS
    if route.conflict:
        errors["409"] = f"CONFLICT: {route.conflict}"
    op["responses"] = {str(route.status): success} | {
        status: {"description": text, "content": error} for status, text in sorted(errors.items())
    }
    return op


def build_document(routes: list[Route]) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for `routes`."""
    types = (
        {ErrorBody}
        | {t for r in routes for t in (r.body, r.doc_body, r.response) if t is not None}
        | {t for r in routes for t in r.extra_doc.values()}
    )
    ordered = sorted(types, key=lambda t: t.__name__)
    schemas, components = msgspec.json.schema_components(ordered, ref_template=_REF)
    refs = dict(zip(ordered, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CodeCourier API",
            "version": "1.0.0",
            "description": "Workflow-execution logs, alerts and notifications. Successful bodies "
            'are `{"data": ...}`; errors are `{"error": {code, message, requestId}}`.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "cc_live_ API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "CC_ADMIN_TOKEN"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "cc_session",
                    "description": "console session (POST /api/v1/session)",
                },
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as served and committed: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(build_document(ROUTES), indent=2, sort_keys=True) + "\n").encode()


if __name__ == "__main__":
    import sys

    sys.stdout.buffer.write(document_bytes())

"""The one error tree of CodeCourier.

    AppError                      code, HTTP status, message, optional field details
    +-- Unauthenticated           401  no, malformed, unknown, revoked or expired key
    +-- ScopeDenied               403  the key lacks a scope
    +-- Forbidden                 403  the request names another project
    +-- NotFound                  404  unknown id, or another project's id
    +-- MethodNotAllowed          405  known path, wrong method
    +-- InvalidInput              400  bad parameter or body (VALIDATION_ERROR)
    |   +-- QueryTooBroad         400  a read would cross a ClickHouse limit (VALIDATION_ERROR)
    +-- InvalidCursor             400  tampered, foreign or filter-mismatched cursor
    +-- Conflict                  409  the state forbids it
    +-- PayloadTooLarge           413  body over the limit
    +-- UnsupportedMediaType      415  body is not JSON
    +-- RateLimited               429  token bucket empty (retryable after `retry_after_s`)
    +-- Unavailable               503  a backing service is down (retryable)

The HTTP middleware maps these to the error envelope; consumers treat `retryable` errors as
back-off and everything else as a dead letter. Driver exceptions are translated into
`Unavailable` at the adapter that raised them.
"""

from schemas.api import ErrorDetail


class AppError(Exception):
    """Base of every error a client or a consumer is meant to see."""

    code = "INTERNAL"
    status = 500
    retryable = False

    def __init__(self, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthenticated(AppError):
    code, status = "UNAUTHENTICATED", 401


class ScopeDenied(AppError):
    code, status = "SCOPE_DENIED", 403

    def __init__(self, scope: str, holder: str = "This key") -> None:
        super().__init__(f"{holder} does not have the required '{scope}' scope.")


class Forbidden(AppError):
    code, status = "FORBIDDEN", 403


class NotFound(AppError):
    code, status = "NOT_FOUND", 404


class MethodNotAllowed(AppError):
    code, status = "METHOD_NOT_ALLOWED", 405

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"Method {method} is not allowed here; use {', '.join(allowed)}.")
        self.allowed = allowed


class InvalidInput(AppError):
    code, status = "VALIDATION_ERROR", 400

    @classmethod
    def field(cls, field: str, message: str) -> "InvalidInput":
        """One bad field, described for the `details` list."""
        return cls(f"{field}: {message}", [ErrorDetail(field=field, message=message)])


class QueryTooBroad(InvalidInput):
    """A query that would read more than its route allows: narrowing it is the fix, not retrying."""


class InvalidCursor(AppError):
    code, status = "INVALID_CURSOR", 400


class Conflict(AppError):
    code, status = "CONFLICT", 409


class PayloadTooLarge(AppError):
    code, status = "PAYLOAD_TOO_LARGE", 413


class UnsupportedMediaType(AppError):
    code, status = "UNSUPPORTED_MEDIA_TYPE", 415


class RateLimited(AppError):
    code, status, retryable = "RATE_LIMITED", 429, True

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(AppError):
    code, status, retryable = "UNAVAILABLE", 503, True

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

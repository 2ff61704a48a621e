"""API errors as Kubernetes ``Status`` objects.

Every failure the server reports is an :class:`APIError` carrying the ``Status`` body (reason, code,
details with field causes); the app turns it into a response. Nothing else may escape a handler: an
unexpected exception becomes a 500 ``InternalError`` Status, never a traceback in the body.

    APIError
    ├── 400 BadRequest          malformed body or query (with the parse position)
    ├── 401 Unauthorized
    ├── 403 Forbidden
    ├── 404 NotFound
    ├── 405 MethodNotAllowed
    ├── 406 NotAcceptable / 415 UnsupportedMediaType
    ├── 409 AlreadyExists / Conflict
    ├── 410 Expired             a resourceVersion older than the compacted history
    ├── 413 RequestEntityTooLarge
    ├── 429 TooManyRequests     with Retry-After (details.retryAfterSeconds)
    ├── 422 Invalid             with causes naming each field
    └── 500 InternalError
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.api.meta import Status, StatusCause, StatusDetails
from controlplane.validation import FieldError


class APIError(Exception):
    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status

    @property
    def code(self) -> int:
        return self.status.code


def _error(
    code: int,
    reason: str,
    message: str,
    *,
    name: str | None = None,
    group: str | None = None,
    kind: str | None = None,
    causes: list[StatusCause] | None = None,
    retry_after: int | None = None,
) -> APIError:
    details = None
    if name is not None or kind is not None or causes or retry_after:
        details = StatusDetails(
            name=name, group=group or None, kind=kind, causes=causes, retry_after_seconds=retry_after
        )
    return APIError(Status(status="Failure", message=message, reason=reason, code=code, details=details))


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> APIError:
    return _error(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        name=name,
        group=group,
        kind=resource,
    )


def already_exists(resource: str, name: str, group: str = "") -> APIError:
    return _error(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        name=name,
        group=group,
        kind=resource,
    )


def conflict(resource: str, name: str, why: str, group: str = "") -> APIError:
    return _error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        name=name,
        group=group,
        kind=resource,
    )


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, name: str, errors: Iterable[FieldError], group: str = "") -> APIError:
    errs = list(errors)
    messages = [e.message() for e in errs]
    causes = [StatusCause(reason=e.type, message=e.body(), field=e.field) for e in errs]
    joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    return _error(
        422,
        "Invalid",
        f'{_qualified(kind, group)} "{name}" is invalid: {joined}',
        name=name,
        group=group,
        kind=kind,
        causes=causes,
    )


def unknown_fields(kind: str, name: str, fields: list[str], group: str = "") -> APIError:
    """fieldValidation=Strict: the manifest has fields the kind does not declare (typos, usually)."""
    causes = [
        StatusCause(reason="FieldValueInvalid", message=f'unknown field "{f}"', field=f) for f in fields
    ]
    listed = ", ".join(f'unknown field "{f}"' for f in fields)
    return _error(
        422,
        "Invalid",
        f'{_qualified(kind, group)} "{name}" is invalid: {listed}',
        name=name,
        group=group,
        kind=kind,
        causes=causes,
    )


def unprocessable(message: str) -> APIError:
    return _error(422, "Invalid", message)


def bad_request(message: str) -> APIError:
    return _error(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> APIError:
    return _error(401, "Unauthorized", message)


def forbidden(message: str, resource: str | None = None, name: str | None = None) -> APIError:
    return _error(403, "Forbidden", message, name=name, kind=resource)


def forbidden_fields(resource: str, name: str, why: str, causes: list[StatusCause]) -> APIError:
    """An admission refusal naming each refused field (``pods "x" is forbidden: violates ...``)."""
    return _error(
        403, "Forbidden", f'{resource} "{name}" is forbidden: {why}', name=name, kind=resource, causes=causes
    )


def too_many_requests(retry_after: int) -> APIError:
    """The client is over its request rate: kube-apiserver's answer, word for word; clients wait
    ``Retry-After`` seconds and send the request again (nothing was done)."""
    return _error(
        429, "TooManyRequests", "Too many requests, please try again later.", retry_after=max(1, retry_after)
    )


def method_not_allowed(verb: str, resource: str) -> APIError:
    return _error(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({verb} {resource})",
        kind=resource,
    )


def not_acceptable(message: str) -> APIError:
    return _error(406, "NotAcceptable", message)


def unsupported_media_type(content_type: str) -> APIError:
    return _error(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - "
        f"accepted media types include: application/json, application/yaml, "
        f"application/merge-patch+json, application/json-patch+json, "
        f"application/strategic-merge-patch+json (got {content_type!r})",
    )


def expired(requested: int, oldest: int) -> APIError:
    return _error(410, "Expired", f"too old resource version: {requested} ({oldest})")


def too_large(limit: int) -> APIError:
    return _error(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def internal(message: str) -> APIError:
    return _error(500, "InternalError", f"Internal error occurred: {message}")


def storage_full(message: str) -> APIError:
    """A write the store refused for lack of space: 500 InternalError, as kube-apiserver answers etcd's
    "mvcc: database space exceeded"; nothing was stored, so the client may retry once space returns."""
    return _error(500, "InternalError", f"Internal error occurred: {message}")


def success(details: StatusDetails | None = None, code: int = 200) -> Status:
    return Status(status="Success", code=code, details=details)

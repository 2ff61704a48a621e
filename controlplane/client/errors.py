"""Client-side errors: the server's ``Status`` with its code and reason, or a transport failure.

ClientError
├── ApiError          the server answered with a Status (code, reason, field causes)
│   ├── NotFound      404
│   ├── Conflict      409 (AlreadyExists or Conflict; see .reason)
│   └── Gone          410 — the resourceVersion is too old: re-list
└── TransportError    the server could not be reached or the stream broke
"""

from __future__ import annotations

from controlplane.api.meta import Status


class ClientError(Exception):
    pass


class TransportError(ClientError):
    pass


class ApiError(ClientError):
    def __init__(self, status: Status) -> None:
        super().__init__(status.message or status.reason or f"HTTP {status.code}")
        self.status = status

    @property
    def code(self) -> int:
        return self.status.code

    @property
    def reason(self) -> str:
        return self.status.reason


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    pass


def from_status(status: Status) -> ApiError:
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(status.code, ApiError)
    return cls(status)

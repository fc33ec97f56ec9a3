"""The gateway's error tree; every error renders in OpenAI's shape.

    GatewayError                      500 server_error
    ├── BadRequest                    400 invalid_request_error
    │   └── PayloadTooLarge           413
    ├── Unauthorized                  401 authentication_error (invalid_api_key)
    ├── Forbidden                     403 permission_error
    ├── InsufficientCredit            402 insufficient_quota
    │   └── KeyBudgetExceeded         402 key_budget_exceeded (a key's or user's budget)
    ├── RateLimited                   429 rate_limit_exceeded (rpm, tpm, max_concurrent)
    ├── NotFound                      404 not_found_error (model_not_found, ...)
    ├── Conflict                      409 conflict
    ├── Unprocessable                 422 invalid_request_error (bad amount, ...)
    ├── UpstreamError                 502 upstream unreachable
    │   ├── UpstreamTimeout           504
    │   ├── UpstreamCredentialsRefused 502 the provider refused the gateway's own key
    │   └── ProviderNotConfigured     503 the provider's key variable is not set
    └── Unavailable                   503 a dependency is down; nothing was served unmetered

Foreign exceptions are translated at the boundary that meets them (``raise ... from exc``).
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    # Response headers the refusal carries (a 429's retry-after and x-ratelimit-*).
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(BadRequest):
    status = 413
    code = "payload_too_large"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"


class InsufficientCredit(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class KeyBudgetExceeded(InsufficientCredit):
    code = "key_budget_exceeded"
    # The quota that refused ("k:<key id>" | "u:<user id>"), for the budget.reached alert.
    scope: str | None = None


class RateLimited(GatewayError):
    """``type`` is OpenAI's: ``requests`` or ``tokens``, the kind of limit reached."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, type_: str, headers: tuple[tuple[bytes, bytes], ...]
    ) -> None:
        super().__init__(message)
        self.type = type_
        self.headers = headers


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class Unprocessable(GatewayError):
    status = 422
    type = "invalid_request_error"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamCredentialsRefused(UpstreamError):
    """The provider answered 401/403 to the operator's key: the gateway's fault, never the
    caller's (whose key the gateway already accepted and never sends upstream)."""

    code = "upstream_credentials_refused"


class ProviderNotConfigured(UpstreamError):
    """Never sent: the provider's ``api_key_env`` is unset. The message names the variable,
    never a key."""

    status = 503
    type = "service_unavailable"
    code = "provider_not_configured"


class Unavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "dependency_unavailable"


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": param}}
    )

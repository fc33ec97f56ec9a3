"""Upstream refusals that are the gateway's doing, not the caller's.

Two kinds, each decided from the refusal's status and body alone:

- The provider refused the operator's credentials (401, or 403: the key lacks a permission).
  The caller's own key was accepted by the gateway and never goes upstream, so passing the
  401 on would tell the caller to fix a key that is fine; the caller gets a 502
  ``upstream_credentials_refused`` instead, and the operator a log line (scrubbed of the key)
  saying what the provider answered. The provider's message is not relayed: it may quote the
  key (OpenAI's does, masked) or name the operator's organization or project.
- The provider refused the ``stream_options`` the gateway injected to be told the usage
  (Azure OpenAI API versions before 2024-09-01 answer 400 "Unrecognized request argument
  supplied: stream_options"; openai/openai-python#1469; validating servers answer 422). The
  call is sent once more as the caller wrote it, and its stream, without a usage report, is
  billed by counting. ``stream_options: false`` on the provider in models.yaml saves the
  round trip.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.catalog import Provider
from gateway.errors import UpstreamCredentialsRefused
from gateway.proxy.scrub import scrub, secret_for

log = logging.getLogger("gateway.pipeline")

CREDENTIAL_STATUSES = frozenset({401, 403})
STREAM_OPTIONS_STATUSES = frozenset({400, 422})
# What the gateway writes into a stream request that did not ask for usage.
INJECTED = {"include_usage": True}
LOGGED_BYTES = 300


def passed_on(
    provider: Provider, status: int, body: bytes, content_type: str
) -> tuple[int, bytes, str]:
    """A refusal as the caller gets it (status, body, content type): as it came, or a 502
    ``upstream_credentials_refused`` when it refused the operator's credentials."""
    if status not in CREDENTIAL_STATUSES:
        return status, body, content_type
    said = scrub(secret_for(provider.api_key), body[:LOGGED_BYTES]).decode("utf-8", "replace")
    log.warning(
        "upstream %s refused the gateway's credentials (%d): %s", provider.name, status, said
    )
    error = UpstreamCredentialsRefused(
        f"The upstream provider refused the gateway's credentials (status {status}). "
        "Your API key is fine; the gateway's operator must fix the provider key."
    )
    return error.status, error.body(), "application/json"


def withdraw_stream_options(
    provider: Provider, payload: dict[str, Any], hidden_usage: bool, status: int, body: bytes
) -> bool:
    """Removes the injected ``stream_options`` from ``payload`` when the upstream refused it;
    True when the call is to be sent again. Only the gateway's own injection is withdrawn: a
    caller that asked for usage itself (its usage chunk is not ``hidden_usage``) gets the
    refusal, as it would directly. What is dropped otherwise is equivalent to what the caller
    sent (no ``stream_options``, or one that asked for nothing)."""
    if status not in STREAM_OPTIONS_STATUSES or b"stream_options" not in body:
        return False
    if not hidden_usage or payload.get("stream_options") != INJECTED:
        return False
    del payload["stream_options"]
    log.warning(
        "upstream %s refused stream_options; sent again without it, billed by counting "
        "(set stream_options: false on this provider in models.yaml to skip the refusal)",
        provider.name,
    )
    return True

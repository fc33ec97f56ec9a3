"""The provider APIs a models.yaml provider may speak (its ``api:``), as data.

Which endpoints a provider's models serve follows from it (``gateway.endpoints`` ``api``), and
how the upstream takes the operator's key: OpenAI and every OpenAI-compatible server read
``Authorization: Bearer``, Anthropic's Messages API reads ``x-api-key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderApi:
    """How a provider API takes the operator's key: in ``key_header``, after ``key_scheme``."""

    key_header: str
    key_scheme: str = ""


# ``api:`` of a provider in models.yaml: which endpoints its models serve
# (gateway.endpoints ``api``) and how the key is sent.
APIS: Mapping[str, ProviderApi] = {
    "openai": ProviderApi("Authorization", "Bearer "),
    "anthropic": ProviderApi("x-api-key"),
}

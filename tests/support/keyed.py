"""A gateway in front of the scripted upstream (tests/support/scripted.py) that sends the
operator's provider key, for what must never leak it, plus a provider that does not accept
``stream_options``. Models ``m`` and ``n`` are priced as the scripted ``m``."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import GatewayFactory, RunningGateway
from tests.support.scripted import ScriptedUpstream

# Shaped like an OpenAI project key: OpenAI's 401 shows its first 8 characters ("sk-proj-").
PROVIDER_KEY = "sk-proj-Qm7vT2xKp9LwZr4Hc8NdYb3Fs6JgUe1A_tR5oVi0XlMq-W2kPz7B"
KEY_ENV = "GUARD_PROVIDER_KEY"

MODELS = """\
currency: usd
providers:
  keyed: {{base_url: "{base_url}", api_key_env: {env}}}
  no_options: {{base_url: "{base_url}", api_key_env: {env}, stream_options: false}}
models:
  m:
    provider: keyed
    upstream_model: up-model
    price: {{input: "1.00", cached_input: "0.10", output: "10.00"}}
    max_output_tokens: 1000
  n:
    provider: no_options
    upstream_model: up-plain
    price: {{input: "1.00", cached_input: "0.10", output: "10.00"}}
    max_output_tokens: 1000
"""


def masked(key: str) -> str:
    """The key as OpenAI's 401 shows it: the first 8 characters, a star for every hidden
    one, the last 4 (``Incorrect API key provided: sk-proj-****...abcd``)."""
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def start_keyed(
    gateways: GatewayFactory, scripted: ScriptedUpstream, folder: Path
) -> RunningGateway:
    scripted.routes.clear()
    scripted.seen.clear()
    path = folder / "keyed-models.yaml"
    path.write_text(MODELS.format(base_url=scripted.base_url, env=KEY_ENV))
    return gateways.start(GATEWAY_MODELS=str(path), **{KEY_ENV: PROVIDER_KEY})

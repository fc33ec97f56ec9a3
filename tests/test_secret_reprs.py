"""What holds a secret leaves it out of its repr: a ``%r`` in a log line prints the whole
object graph (the pipeline logs a failing settlement listener that way, and the auto top-up
listener holds the Stripe configuration)."""

from __future__ import annotations

from pathlib import Path

from gateway.billing import Billing
from gateway.billing.autotopup import AutoTopUp
from gateway.catalog import parse
from gateway.settings import Settings

SECRETS = {
    "STRIPE_API_KEY": "sk_test_reprSecretStripe123",
    "STRIPE_WEBHOOK_SECRET": "whsec_reprSecretWebhook456",
    "GATEWAY_ADMIN_KEY": "adm-reprSecretAdmin789",
    "OPENAI_API_KEY": "sk-proj-reprSecretProvider000",
}


def test_listeners_settings_and_providers_keep_their_secrets_out_of_repr(tmp_path: Path) -> None:
    settings = Settings.from_env({"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/g.db", **SECRETS})
    billing = Billing.from_settings(settings, currency="usd", ledger=None, store=None)  # type: ignore[arg-type]
    catalog = parse(
        "providers: {openai: {base_url: 'https://api.openai.com/v1', "
        "api_key_env: OPENAI_API_KEY}}\n"
        "models: {m: {provider: openai, price: {input: '1.00', output: '1.00'}}}\n",
        source="models.yaml",
        env=SECRETS,
    )
    assert catalog.providers["openai"].api_key == SECRETS["OPENAI_API_KEY"]
    assert billing.config.api_key == SECRETS["STRIPE_API_KEY"]
    shown = " ".join(
        repr(obj) for obj in (settings, AutoTopUp(billing), billing, catalog, catalog.models["m"])
    )
    for name, secret in SECRETS.items():
        assert secret not in shown, name

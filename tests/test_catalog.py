from __future__ import annotations

from pathlib import Path

import pytest

from gateway import catalog
from gateway.errors import BadRequest, NotFound
from gateway.inputs import ImageRule

GOOD = """\
currency: usd
providers:
  openai: {base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
models:
  gpt-4o:
    provider: openai
    upstream_model: gpt-4o-2024-08-06
    price: {input: "2.50", cached_input: "1.25", output: "10.00"}
    max_output_tokens: 16384
  text-embedding-3-small:
    provider: openai
    price: {input: "0.02"}
"""


def test_shipped_models_file_is_valid():
    loaded = catalog.load(Path(__file__).parent.parent / "models.yaml", {})
    assert "demo" in loaded.models
    assert loaded.models["text-embedding-3-small"].kind == "embedding"
    assert loaded.models["gpt-4o"].price.input == 2_500_000_000


def test_parse_reads_prices_exactly_and_resolves_provider_key():
    loaded = catalog.parse(GOOD, source="m.yaml", env={"OPENAI_API_KEY": "sk-x"})
    model = loaded.models["gpt-4o"]
    assert model.upstream_model == "gpt-4o-2024-08-06"
    assert (model.price.input, model.price.cached_input, model.price.output) == (
        2_500_000_000,
        1_250_000_000,
        10_000_000_000,
    )
    assert model.provider.api_key == "sk-x"
    assert "sk-x" not in repr(model)


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (GOOD.replace('output: "10.00"', "output: 10.00"), "m.yaml:8: models.gpt-4o.price.output"),
        (
            GOOD.replace("provider: openai\n    upstream", "provider: azure\n    upstream"),
            "m.yaml:6: models.gpt-4o.provider",
        ),
        (
            GOOD.replace('input: "0.02"', 'input: "-1"'),
            "m.yaml:12: models.text-embedding-3-small.price.input",
        ),
        (
            GOOD.replace("max_output_tokens: 16384", "max_output_tokens: lots"),
            "m.yaml:9: models.gpt-4o.max_output_tokens",
        ),
        (GOOD.replace("https://api", "ftp://api"), "m.yaml:3: providers.openai.base_url"),
        (
            GOOD.replace(
                "max_output_tokens: 16384", "max_output_tokens: 16384\n    context_window: 0"
            ),
            "m.yaml:10: models.gpt-4o.context_window",
        ),
        (
            GOOD.replace(
                "max_output_tokens: 16384", 'max_output_tokens: 16384\n    context_window: "128k"'
            ),
            "m.yaml:10: models.gpt-4o.context_window",
        ),
        (
            GOOD.replace(
                "max_output_tokens: 16384", "max_output_tokens: 16384\n    hidden_reasoning: yes!"
            ),
            "m.yaml:10: models.gpt-4o.hidden_reasoning: must be true or false",
        ),
        (
            GOOD.replace(
                "max_output_tokens: 16384", "max_output_tokens: 16384\n    image_tokens: -5"
            ),
            "m.yaml:10: models.gpt-4o.image_tokens",
        ),
        (
            GOOD.replace(
                "max_output_tokens: 16384",
                "max_output_tokens: 16384\n    image_tokens:\n      base: 85\n      tiles: 170",
            ),
            "m.yaml:12: models.gpt-4o.image_tokens.tiles: unknown field",
        ),
        (
            GOOD.replace(
                "max_output_tokens: 16384", "max_output_tokens: 16384\n    image_tokens: {base: 85}"
            ),
            "m.yaml:10: models.gpt-4o.image_tokens: the tile formula needs both",
        ),
        (
            GOOD.replace(
                "max_output_tokens: 16384",
                "max_output_tokens: 16384\n    image_tokens: {base: 85, tile: 1.5}",
            ),
            "m.yaml:10: models.gpt-4o.image_tokens.tile",
        ),
        (GOOD + "  gpt-4o:\n    provider: openai\n", "m.yaml:13: models.gpt-4o: duplicate key"),
        ("models: [\n", "m.yaml:2: not valid YAML"),
    ],
)
def test_invalid_file_names_line_and_field(broken, where):
    with pytest.raises(catalog.CatalogError) as err:
        catalog.parse(broken, source="m.yaml", env={})
    assert str(err.value).startswith(where)


def test_input_bounds_are_optional_and_read_exactly():
    plain = catalog.parse(GOOD, source="m.yaml", env={}).models["gpt-4o"]
    assert plain.context_window is None
    assert plain.image_tokens is None
    bounded = GOOD.replace(
        "max_output_tokens: 16384",
        "max_output_tokens: 16384\n"
        "    context_window: 128000\n"
        "    image_tokens: {base: 85, tile: 170}",
    )
    model = catalog.parse(bounded, source="m.yaml", env={}).models["gpt-4o"]
    assert model.context_window == 128_000
    assert model.image_tokens == ImageRule(85, 170)
    flat = GOOD.replace(
        "max_output_tokens: 16384", "max_output_tokens: 16384\n    image_tokens: 2489"
    )
    assert catalog.parse(flat, source="m.yaml", env={}).models["gpt-4o"].image_tokens == ImageRule(
        2489
    )


def test_every_shipped_chat_model_bounds_what_the_body_does_not_carry():
    # Out of the box, images and continuations are reserved, not refused (README).
    loaded = catalog.load(Path(__file__).parent.parent / "models.yaml", {})
    for model in loaded.models.values():
        if model.kind == "chat":
            assert model.context_window, model.name
            assert model.context_window >= model.max_output_tokens, model.name


def test_resolve_refuses_unknown_model_and_wrong_kind():
    loaded = catalog.parse(GOOD, source="m.yaml", env={})
    with pytest.raises(NotFound):
        loaded.resolve("gpt-5", "chat/completions")
    with pytest.raises(BadRequest):
        loaded.resolve("text-embedding-3-small", "chat/completions")
    with pytest.raises(BadRequest):
        loaded.resolve(None, "chat/completions")


PRICED = """\
currency: usd
providers:
  anthropic: {base_url: https://api.anthropic.com/v1, dialect: anthropic}
  google: {base_url: https://generativelanguage.googleapis.com/v1beta/openai}
models:
  claude:
    provider: anthropic
    price:
      input: "3.00"
      cached_input: "0.30"
      cache_write: "3.75"
      cache_write_1h: "6.00"
      output: "15.00"
      tiers:
        - above_input_tokens: 200000
          price: {input: "6.00", cached_input: "0.60", cache_write: "7.50",
                  cache_write_1h: "12.00", output: "22.50"}
  realtime:
    provider: google
    price: {input: "2.50", output: "10.00", audio_input: "40.00", audio_output: "80.00"}
"""


def test_every_price_field_tier_and_dialect_is_read_exactly():
    loaded = catalog.parse(PRICED, source="m.yaml", env={})
    assert loaded.providers["anthropic"].dialect == "anthropic"
    assert loaded.providers["google"].dialect is None
    claude = loaded.models["claude"].price
    assert (claude.cache_write, claude.cache_write_1h) == (3_750_000_000, 6_000_000_000)
    (tier,) = claude.tiers
    assert tier.above_input_tokens == 200_000
    assert (tier.price.input, tier.price.cached_input, tier.price.output) == (
        6_000_000_000,
        600_000_000,
        22_500_000_000,
    )
    assert (tier.price.cache_write, tier.price.cache_write_1h) == (7_500_000_000, 12_000_000_000)
    assert tier.price.tiers == ()
    realtime = loaded.models["realtime"].price
    assert (realtime.audio_input, realtime.audio_output) == (40_000_000_000, 80_000_000_000)


FULL_TIER = (
    '          price: {input: "9", cached_input: "1", cache_write: "9", cache_write_1h: "9",'
    ' output: "30"}\n'
)


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (
            PRICED.replace("dialect: anthropic", "dialect: claude"),
            "m.yaml:3: providers.anthropic.dialect: unknown usage dialect",
        ),
        (
            PRICED.replace('cache_write: "3.75"', "cache_write: 3.75"),
            "m.yaml:11: models.claude.price.cache_write: price must be a quoted decimal",
        ),
        (
            PRICED.replace('audio_output: "80.00"', 'audio_ouput: "80.00"'),
            "m.yaml:20: models.realtime.price.audio_ouput: unknown price field",
        ),
        (
            PRICED.replace("above_input_tokens: 200000", "above_input_tokens: -5"),
            "m.yaml:15: models.claude.price.tiers.0.above_input_tokens: must be a positive",
        ),
        (
            PRICED.replace(
                "      tiers:\n", "      tiers:\n        - above_input_tokens: 300000\n" + FULL_TIER
            ),
            "m.yaml:17: models.claude.price.tiers.1.above_input_tokens: tiers must be in ascending",
        ),
        (
            PRICED.replace('cache_write_1h: "12.00", ', ""),
            "m.yaml:16: models.claude.price.tiers.0.price.cache_write_1h: the base price sets it",
        ),
        (
            PRICED.replace('output: "22.50"', 'output: "22.50", audio_input: "1"'),
            "m.yaml:17: models.claude.price.tiers.0.price.audio_input: the base price does not",
        ),
        (
            PRICED.replace('output: "22.50"}', 'output: "22.50", tiers: []}'),
            "m.yaml:17: models.claude.price.tiers.0.price.tiers: unknown price field",
        ),
        (
            PRICED.replace("        - above_input_tokens", "        - above_tokens"),
            "m.yaml:15: models.claude.price.tiers.0.above_tokens: unknown field",
        ),
        (
            PRICED.replace('output: "22.50"', "output: ~"),
            "m.yaml:17: models.claude.price.tiers.0.price.output: a chat model needs an output",
        ),
        (
            PRICED.split("      tiers:")[0]
            + "      tiers: {}\n"
            + PRICED[PRICED.index("  realtime:") :],
            "m.yaml:14: models.claude.price.tiers: must be a list",
        ),
    ],
)
def test_price_fields_tiers_and_dialects_are_checked_with_file_line_and_field(broken, where):
    with pytest.raises(catalog.CatalogError) as err:
        catalog.parse(broken, source="m.yaml", env={})
    assert str(err.value).startswith(where), str(err.value)


SEARCHED = PRICED.replace(
    '      output: "15.00"\n      tiers:',
    '      output: "15.00"\n      web_search: "10.00"\n      tiers:',
)


def test_a_web_search_price_is_per_1000_requests_on_the_base_price_only():
    claude = catalog.parse(SEARCHED, source="m.yaml", env={}).models["claude"].price
    assert claude.web_search == 10_000_000_000  # nano-USD per 1,000 searches
    assert claude.tiers[0].price.web_search is None  # a tier prices tokens only
    assert catalog.parse(PRICED, source="m.yaml", env={}).models["claude"].price.web_search is None


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (
            SEARCHED.replace('web_search: "10.00"', "web_search: 10"),
            "m.yaml:14: models.claude.price.web_search: price must be a quoted decimal",
        ),
        (
            SEARCHED.replace('output: "22.50"}', 'output: "22.50", web_search: "5"}'),
            "m.yaml:18: models.claude.price.tiers.0.price.web_search: set on the base price only",
        ),
    ],
)
def test_web_search_prices_are_checked_with_file_line_and_field(broken, where):
    with pytest.raises(catalog.CatalogError) as err:
        catalog.parse(broken, source="m.yaml", env={})
    assert str(err.value).startswith(where), str(err.value)


def test_a_beta_header_opens_the_larger_context_window_it_names():
    text = SEARCHED.replace(
        "  realtime:",
        "    context_window: 200000\n    beta_context_windows: {ctx-1m: 1000000}\n  realtime:",
    )
    claude = catalog.parse(text, source="m.yaml", env={}).models["claude"]
    assert claude.with_betas(None).context_window == 200_000
    assert claude.with_betas(b"other-beta").context_window == 200_000
    assert claude.with_betas(b"other-beta, ctx-1m").context_window == 1_000_000
    assert claude.with_betas(b"ctx-1m").price == claude.price
    broken = text.replace("{ctx-1m: 1000000}", "{ctx-1m: lots}")
    with pytest.raises(catalog.CatalogError) as err:
        catalog.parse(broken, source="m.yaml", env={})
    assert "models.claude.beta_context_windows.ctx-1m: must be a whole number" in str(err.value)

"""models.yaml's deployments (gateway.deployments through gateway.catalog): the one-deployment
form, the list, and every mistake named by file, line and field."""

from __future__ import annotations

import pytest

from gateway import catalog

ROUTED = """\
currency: usd
providers:
  openai: {base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
  azure: {base_url: https://east.example.com/openai/v1, api_key_env: AZURE_KEY, dialect: xai}
  spare: {base_url: http://127.0.0.1:9000/v1}
models:
  gpt-4o:
    price: {input: "2.50", output: "10.00"}
    max_output_tokens: 16384
    deployments:
      - provider: spare
        priority: 3
      - {provider: azure, upstream_model: gpt-4o-east, weight: 3}
      - {provider: openai, upstream_model: gpt-4o-2024-08-06}
  mini:
    provider: openai
    price: {input: "0.15", output: "0.60"}
"""


def test_deployments_are_read_highest_priority_first_with_their_providers() -> None:
    loaded = catalog.parse(ROUTED, source="m.yaml", env={"AZURE_KEY": "az", "OPENAI_API_KEY": "o"})
    model = loaded.models["gpt-4o"]
    seen = [(d.name, d.weight, d.priority) for d in model.deployments]
    assert seen == [
        ("azure/gpt-4o-east", 3, 1),
        ("openai/gpt-4o-2024-08-06", 1, 1),
        ("spare/gpt-4o", 1, 3),  # upstream_model defaults to the model's name
    ]
    assert model.deployments[0].provider is loaded.providers["azure"]
    assert model.deployments[0].provider.api_key == "az"
    assert model.deployments[0].provider.dialect == "xai"
    # The model's own provider and upstream name are its first deployment's.
    assert (model.provider.name, model.upstream_model) == ("azure", "gpt-4o-east")
    assert model.price.input == 2_500_000_000  # one price, whichever deployment serves


def test_the_one_deployment_form_is_a_list_of_one() -> None:
    loaded = catalog.parse(ROUTED, source="m.yaml", env={})
    (only,) = loaded.models["mini"].deployments
    assert (only.name, only.weight, only.priority) == ("openai/mini", 1, 1)
    assert only.provider is loaded.providers["openai"]


def test_a_model_built_without_deployments_has_its_own_provider_as_one() -> None:
    loaded = catalog.parse(ROUTED, source="m.yaml", env={})
    mini = loaded.models["mini"]
    rebuilt = catalog.Model("x", mini.provider, "up-x", mini.price)
    assert [d.name for d in rebuilt.deployments] == ["openai/up-x"]


BLOCK = ROUTED[ROUTED.index("    deployments:") : ROUTED.index("  mini:")]


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (
            ROUTED.replace("    deployments:\n", "    provider: openai\n    deployments:\n"),
            "m.yaml:10: models.gpt-4o.provider: give either provider (one deployment) or",
        ),
        (
            ROUTED.replace("provider: spare\n", "provider: nowhere\n"),
            "m.yaml:11: models.gpt-4o.deployments.0.provider: unknown provider 'nowhere'",
        ),
        (
            ROUTED.replace("priority: 3", "priority: 0"),
            "m.yaml:12: models.gpt-4o.deployments.0.priority: must be a whole number from 1",
        ),
        (
            ROUTED.replace("priority: 3", "priority: high"),
            "m.yaml:12: models.gpt-4o.deployments.0.priority",
        ),
        (
            ROUTED.replace("weight: 3", "weight: 0.5"),
            "m.yaml:13: models.gpt-4o.deployments.1.weight: must be a whole number",
        ),
        (
            ROUTED.replace("weight: 3", "weight: true"),
            "m.yaml:13: models.gpt-4o.deployments.1.weight",
        ),
        (
            ROUTED.replace("weight: 3", "region: east"),
            "m.yaml:13: models.gpt-4o.deployments.1.region: unknown field",
        ),
        (
            ROUTED.replace(
                "upstream_model: gpt-4o-east", "upstream_model: gpt-4o-2024-08-06"
            ).replace("provider: azure", "provider: openai"),
            "m.yaml:14: models.gpt-4o.deployments.2: openai/gpt-4o-2024-08-06 is listed twice",
        ),
        (
            ROUTED.replace("upstream_model: gpt-4o-east", "upstream_model: ''"),
            "m.yaml:13: models.gpt-4o.deployments.1.upstream_model: must be a model name",
        ),
        (
            ROUTED.replace("    provider: openai\n    price", "    price"),
            "m.yaml:15: models.mini.provider: missing: name one of the providers (or a deployments",
        ),
        (
            ROUTED.replace(BLOCK, "    deployments: {provider: spare}\n"),
            "m.yaml:10: models.gpt-4o.deployments: must be a list, like",
        ),
        (
            ROUTED.replace(BLOCK, "    deployments: []\n"),
            "m.yaml:10: models.gpt-4o.deployments: must list at least one deployment",
        ),
        (
            ROUTED.replace("- provider: spare\n        priority: 3", "- spare"),
            "m.yaml:11: models.gpt-4o.deployments.0: must be a mapping with provider",
        ),
    ],
)
def test_a_bad_deployment_is_named_by_file_line_and_field(broken: str, where: str) -> None:
    with pytest.raises(catalog.CatalogError) as err:
        catalog.parse(broken, source="m.yaml", env={})
    assert str(err.value).startswith(where), str(err.value)


def test_an_empty_deployments_list_is_refused() -> None:
    broken = ROUTED.replace(BLOCK, "    deployments: []\n")
    with pytest.raises(catalog.CatalogError, match=r"m.yaml:10: models.gpt-4o.deployments: must"):
        catalog.parse(broken, source="m.yaml", env={})

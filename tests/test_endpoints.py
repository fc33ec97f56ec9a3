"""The endpoint table is the one place endpoint knowledge lives; these check its rows."""

from __future__ import annotations

import pytest

from gateway.catalog import KINDS
from gateway.endpoints import ENDPOINTS, Endpoint
from gateway.usage_dialects import normalize


def test_every_row_is_keyed_by_its_path_and_served_by_a_catalog_kind() -> None:
    assert set(ENDPOINTS) == {
        "chat/completions",
        "completions",
        "embeddings",
        "responses",
        "messages",
    }
    for path, endpoint in ENDPOINTS.items():
        assert endpoint.path == path
        assert endpoint.model_kind in KINDS


def test_only_generating_endpoints_stream_or_cap_output() -> None:
    for endpoint in ENDPOINTS.values():
        generates = endpoint.model_kind == "chat"
        assert endpoint.streams is generates
        assert bool(endpoint.cap_fields) is generates
        # Asking for stream usage makes sense only where usage is not in a final event.
        assert not (endpoint.include_usage and endpoint.usage.typed_events)


@pytest.mark.parametrize(
    ("endpoint", "answer"),
    [
        (
            ENDPOINTS["chat/completions"],
            {
                "usage": {
                    "prompt_tokens": 9,
                    "completion_tokens": 4,
                    "prompt_tokens_details": {"cached_tokens": 2},
                    "completion_tokens_details": {"reasoning_tokens": 1},
                }
            },
        ),
        (
            ENDPOINTS["responses"],
            {
                "usage": {
                    "input_tokens": 9,
                    "output_tokens": 4,
                    "input_tokens_details": {"cached_tokens": 2},
                    "output_tokens_details": {"reasoning_tokens": 1},
                }
            },
        ),
    ],
)
def test_each_endpoints_usage_names_are_read_without_configuration(
    endpoint: Endpoint, answer: dict[str, object]
) -> None:
    usage = normalize(answer)
    assert usage is not None
    counts = (usage.prompt_tokens, usage.output_tokens, usage.cached_tokens)
    assert counts == (9, 4, 2)
    assert usage.reasoning_tokens == 1


def test_absent_usage_stays_unknown() -> None:
    answers: list[object] = [None, [], {}, {"usage": None}, {"usage": "12"}]
    for answer in answers:
        assert normalize(answer) is None

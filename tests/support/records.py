"""One factory for the usage records tests settle and write: the fields a test does not care
about get fixed, plain values, and each test names only what it checks."""

from __future__ import annotations

from typing import Any

from gateway.records import UsageRecord


def usage_record(request_id: str, user_id: str, cost: int, **fields: Any) -> UsageRecord:
    """A served call of ``cost`` nano-USD; ``fields`` override any other column."""
    values: dict[str, Any] = {
        "key_id": "k1",
        "model": "m",
        "provider": "p",
        "endpoint": "chat",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "price_input": 1,
        "price_cached_input": None,
        "price_output": 2,
        "status": "ok",
        "usage_source": "upstream",
        "latency_ms": 3,
        **fields,
    }
    return UsageRecord(request_id=request_id, user_id=user_id, cost=cost, **values)

"""gateway.proxy.attribution as a pure function: which request values become end user, tags
and session, the bounds, and the codec carrying them through the Redis stream and spill files."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.metering.codec import decode_record, encode_record
from gateway.proxy.attribution import MAX_TAGS, NONE, Attribution, attribution
from tests.ledger.books import usage


def test_no_attribution_is_the_shared_empty_value() -> None:
    assert attribution({}, {"model": "m", "messages": []}) is NONE


@pytest.mark.parametrize(
    ("headers", "payload", "expected"),
    [
        ({}, {"user": "u1"}, Attribution(end_user="u1")),
        ({}, {"user": "u1", "safety_identifier": "h"}, Attribution(end_user="h")),
        ({}, {"user": "", "safety_identifier": None}, Attribution()),
        ({}, {"prompt_cache_key": "k"}, NONE),
        (
            {b"x-gateway-tags": b" b , a,,b "},
            {"metadata": {"tags": "a,c", "team": "x"}},
            Attribution(tags=("b", "a", "c")),
        ),
        ({}, {"metadata": {"team": "x"}}, Attribution()),
        ({b"x-gateway-session-id": b" s-1 "}, {}, Attribution(session_id="s-1")),
        ({b"x-gateway-session-id": b""}, {}, Attribution()),
        (
            {b"x-gateway-tags": ",".join(f"t{i}" for i in range(MAX_TAGS)).encode()},
            {"metadata": {"tags": "t0"}},
            Attribution(tags=tuple(f"t{i}" for i in range(MAX_TAGS))),
        ),
    ],
)
def test_what_becomes_attribution(
    headers: dict[bytes, bytes], payload: dict[str, Any], expected: Attribution
) -> None:
    assert attribution(headers, payload) == expected


@pytest.mark.parametrize(
    ("headers", "payload", "param"),
    [
        ({b"x-gateway-tags": "é".encode()}, {}, "x-gateway-tags"),
        (
            {},
            {"metadata": {"tags": ",".join(f"t{i}" for i in range(MAX_TAGS + 1))}},
            "metadata.tags",
        ),
        ({}, {"metadata": {"tags": 3}}, "metadata.tags"),
        ({b"x-gateway-session-id": b"a,b"}, {}, "x-gateway-session-id"),
        ({}, {"user": ["u"]}, "user"),
        ({}, {"safety_identifier": "x\x00"}, "safety_identifier"),
    ],
)
def test_bad_values_are_refused_by_name(
    headers: dict[bytes, bytes], payload: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        attribution(headers, payload)
    assert (caught.value.status, caught.value.param, caught.value.code) == (
        400,
        param,
        "invalid_value",
    )


def test_codec_carries_attribution_and_reads_older_records() -> None:
    record = replace(usage("r1", "alice", 5), end_user="e", tags=("a", "b"), session_id="s")
    assert decode_record(encode_record(record)) == record
    old = encode_record(usage("r2", "alice", 5)).replace(b',"end_user":null', b"")
    old = old.replace(b',"tags":[]', b"").replace(b',"session_id":null', b"")
    assert b"tags" not in old
    assert decode_record(old) == usage("r2", "alice", 5)

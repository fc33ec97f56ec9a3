"""Content-Encoding decoding: every coding the gateway reads, in any chunking, and the refusals."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.encodings import Corrupt, Unreadable, decoder

try:
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from backports import zstd

CONTENT = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hello there friend"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}\n\ndata: [DONE]\n\n'
) * 3


def raw_deflate(data: bytes) -> bytes:
    obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()


CODINGS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}
# Two gzip members, raw deflate sent as "deflate", two zstd frames, a list of codings.
VARIANTS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip-members": ("gzip", lambda d: gzip.compress(d[:50]) + gzip.compress(d[50:])),
    "raw-deflate": ("deflate", raw_deflate),
    "zstd-frames": ("zstd", lambda d: zstd.compress(d[:70]) + zstd.compress(d[70:])),
    "gzip-then-br": ("gzip, br", lambda d: brotli.compress(gzip.compress(d))),
    "upper-case-identity-in-list": ("IDENTITY, GZIP", gzip.compress),
}
ALL = {**{c: (c, f) for c, f in CODINGS.items()}, **VARIANTS}


def decode(header: str, pieces: list[bytes]) -> bytes:
    d = decoder(header)
    assert d is not None
    return b"".join(d.feed(p) for p in pieces) + d.end()


@pytest.mark.parametrize("name", ALL)
def test_every_split_point_decodes_to_the_content(name: str) -> None:
    header, encode = ALL[name]
    coded = encode(CONTENT)
    for cut in range(len(coded) + 1):
        assert decode(header, [coded[:cut], coded[cut:]]) == CONTENT


@given(st.sampled_from(sorted(ALL)), st.lists(st.integers(0, 1000), max_size=20))
def test_any_chunking_decodes_to_the_content(name: str, cuts: list[int]) -> None:
    header, encode = ALL[name]
    coded = encode(CONTENT)
    points = sorted({c % (len(coded) + 1) for c in cuts})
    pieces = [coded[a:b] for a, b in zip([0, *points], [*points, len(coded)], strict=True)]
    assert decode(header, pieces) == CONTENT


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_identity_needs_no_decoder(header: str | None) -> None:
    assert decoder(header) is None


@pytest.mark.parametrize("header", ["compress", "gzip, compress", "exi", "pack200-gzip"])
def test_a_coding_the_gateway_cannot_read_is_refused(header: str) -> None:
    with pytest.raises(Unreadable) as info:
        decoder(header)
    assert info.value.coding in header


@pytest.mark.parametrize("name", CODINGS)
def test_a_coded_stream_cut_short_is_corrupt(name: str) -> None:
    coded = CODINGS[name](CONTENT)
    d = decoder(name)
    assert d is not None
    d.feed(coded[: len(coded) // 2])
    with pytest.raises(Corrupt):
        d.end()


@pytest.mark.parametrize("name", CODINGS)
def test_bytes_that_are_not_in_the_coding_are_corrupt(name: str) -> None:
    page = b"<html>not compressed at all, whatever the header says</html>" * 4
    with pytest.raises(Corrupt):
        decode(name, [page])


def test_an_empty_coded_body_is_empty() -> None:
    for name in CODINGS:
        d = decoder(name)
        assert d is not None
        assert d.feed(b"") + d.end() == b""

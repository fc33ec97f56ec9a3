"""Who and what a call is for, read from its request at admission: end user, tags, session.

=================  =========================================================================
``end_user``       the body's ``safety_identifier``, else its ``user`` (OpenAI's fields; the
                   first supersedes the second), else ``metadata.user_id`` (Anthropic's
                   Messages API; Claude Code sends one). ``prompt_cache_key`` is not read:
                   it names a cache, which many end users may share.
``tags``           the ``x-gateway-tags`` header and the body's ``metadata.tags``, each a
                   comma-separated list; blanks around a tag are dropped, duplicates kept
                   once, header first. No other ``metadata`` key becomes a tag (metadata goes
                   upstream unchanged, as sent).
``session_id``     the ``x-gateway-session-id`` header: the conversation the call belongs to.
=================  =========================================================================

Bounds, so a caller cannot bloat the usage table: at most ``MAX_TAGS`` tags of
``MAX_TAG_CHARS`` characters from ``TAG_CHARS``; a session id of at most ``MAX_SESSION_CHARS``
from the same characters; an end user of at most ``MAX_END_USER_CHARS`` printable characters.
A value outside them is refused with a 400 naming it, before anything is reserved or charged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import BadRequest

MAX_TAGS: Final = 10
MAX_TAG_CHARS: Final = 64
MAX_SESSION_CHARS: Final = 128
MAX_END_USER_CHARS: Final = 256
TAG_CHARS: Final = "letters, digits and _ . : / @ + = -"
_TAG = re.compile(r"[A-Za-z0-9_.:/@+=-]+")
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")
TAGS_HEADER: Final = b"x-gateway-tags"
SESSION_HEADER: Final = b"x-gateway-session-id"


@dataclass(frozen=True, slots=True)
class Attribution:
    end_user: str | None = None
    tags: tuple[str, ...] = ()
    session_id: str | None = None


NONE: Final = Attribution()


def attribution(headers: Mapping[bytes, bytes], payload: Mapping[str, Any]) -> Attribution:
    """The call's attribution (``NONE`` when it names none). Raises ``BadRequest``."""
    raw_tags = headers.get(TAGS_HEADER)
    raw_session = headers.get(SESSION_HEADER)
    metadata = payload.get("metadata")
    end = payload.get("safety_identifier"), payload.get("user")
    if raw_tags is None and raw_session is None and metadata is None and end == (None, None):
        return NONE  # the common case: four lookups
    anthropic_user = metadata.get("user_id") if isinstance(metadata, dict) else None
    tags: dict[str, None] = {}
    if raw_tags is not None:
        _add_tags(tags, raw_tags.decode("latin-1"), "x-gateway-tags")
    if isinstance(metadata, dict) and metadata.get("tags") is not None:
        value = metadata["tags"]
        if not isinstance(value, str):
            raise _bad("metadata.tags must be a string of comma-separated tags", "metadata.tags")
        _add_tags(tags, value, "metadata.tags")
    return Attribution(
        end_user=_end_user(
            ("safety_identifier", end[0]), ("user", end[1]), ("metadata.user_id", anthropic_user)
        ),
        tags=tuple(tags),
        session_id=_session(raw_session),
    )


def _add_tags(tags: dict[str, None], raw: str, param: str) -> None:
    for part in raw.split(","):
        tag = part.strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS or not _TAG.fullmatch(tag):
            raise _bad(
                f"{param}: tag {tag[:MAX_TAG_CHARS]!r} must be 1 to {MAX_TAG_CHARS} of {TAG_CHARS}",
                param,
            )
        tags[tag] = None
        if len(tags) > MAX_TAGS:
            raise _bad(f"{param}: a call takes at most {MAX_TAGS} distinct tags", param)


def _session(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    value = raw.decode("latin-1").strip()
    if not value:
        return None
    if len(value) > MAX_SESSION_CHARS or not _TAG.fullmatch(value):
        raise _bad(
            f"x-gateway-session-id must be 1 to {MAX_SESSION_CHARS} of {TAG_CHARS}",
            "x-gateway-session-id",
        )
    return value


def _end_user(*fields: tuple[str, object]) -> str | None:
    for name, value in fields:
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise _bad(f"{name} must be a string", name)
        if len(value) > MAX_END_USER_CHARS or not _PRINTABLE.fullmatch(value):
            raise _bad(
                f"{name} must be at most {MAX_END_USER_CHARS} characters, without control "
                "characters",
                name,
            )
        return value
    return None


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, param=param, code="invalid_value")

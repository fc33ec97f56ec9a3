"""Readers of each provider's usage object -> ``NormalizedUsage`` (pure, no I/O).

One function per family of fields; which family an object belongs to is told by its field
names, never by a provider name. ``gateway.usage_dialects`` finds these objects in a body or
a stream event, chooses the reader and merges stream reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import ROUND_CEILING, Decimal
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "Dialect",
    "NormalizedUsage",
    "clip",
    "count",
    "larger",
    "read_counts",
    "read_gemini",
    "read_timings",
    "read_usage",
]

NANOS_PER_USD: Final = 1_000_000_000
# xAI's cost_in_usd_ticks: 1 tick = 1e-10 USD (docs.x.ai, consumption and rate limits).
TICKS_PER_NANO: Final = 10
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
# Fields some providers put on usage itself, beside OpenAI's: tested in one call, so an
# OpenAI-shaped usage (the common case, once per response or per vLLM chunk) skips them.
_EXTENSIONS: Final = frozenset(
    {
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation",
        "prompt_cache_hit_tokens",
        "prompt_cache_miss_tokens",
        "cached_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost",
        "cost_in_usd_ticks",
        "server_tool_use",
    }
)


@dataclass(frozen=True, slots=True)
class NormalizedUsage:
    """Token counts of one call, as reported; None = not reported (never read as 0).

    ``cached_tokens``, ``cache_write_tokens`` and ``prompt_audio_tokens`` are subsets of
    ``prompt_tokens``; ``cache_write_1h_tokens`` is a subset of ``cache_write_tokens``;
    ``reasoning_tokens`` and ``output_audio_tokens`` are subsets of ``output_tokens``.
    ``upstream_cost_nanos`` is the provider's own price for the call (OpenRouter ``cost``,
    xAI ``cost_in_usd_ticks``), informational only. ``web_search_requests`` counts requests,
    not tokens (Anthropic ``server_tool_use.web_search_requests``).
    """

    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    prompt_audio_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    output_audio_tokens: int | None = None
    upstream_cost_nanos: int | None = None
    web_search_requests: int | None = None

    @property
    def cache_write_5m_tokens(self) -> int | None:
        """Writes at the short TTL: Anthropic's default 5 minutes, and every write whose
        provider states no TTL (OpenAI and OpenRouter ``cache_write_tokens``, priced 1.25x
        input like Anthropic's 5-minute writes)."""
        if self.cache_write_tokens is None:
            return None
        return max(self.cache_write_tokens - (self.cache_write_1h_tokens or 0), 0)

    def as_dict(self) -> dict[str, int | None]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["cache_write_5m_tokens"] = self.cache_write_5m_tokens
        return out


@dataclass(frozen=True, slots=True)
class Dialect:
    """A refinement for an upstream whose counts are ambiguous by their fields alone.

    ``reasoning_outside``: reasoning tokens are not inside ``completion_tokens``; applied
    only when ``total_tokens`` cannot settle it (with a total, total - prompt already bills
    hidden tokens, and a wrong claim here would bill reasoning twice).
    ``cache_disjoint``: cache reads and writes reported on usage itself are not inside
    ``prompt_tokens`` (Anthropic's counting under OpenAI field names), unless ``total_tokens``
    shows they are; detected without it when they exceed the prompt or when ``total_tokens``
    adds them separately.
    """

    reasoning_outside: bool = False
    cache_disjoint: bool = False


def read_usage(u: dict[str, Any], rules: Dialect) -> NormalizedUsage | None:
    """One ``usage`` object of the OpenAI, Responses, Anthropic or DeepSeek family.

    Follows the OpenAI API reference (chat ``CompletionUsage``, Responses ``ResponseUsage``,
    Realtime ``input_token_details``), docs.anthropic.com/en/api/messages (``usage``) and
    /en/docs/build-with-claude/prompt-caching (``cache_creation``),
    api-docs.deepseek.com/guides/kv_cache, openrouter.ai/docs/use-cases/usage-accounting
    (``cost``, ``cache_write_tokens``) and docs.x.ai (``cost_in_usd_ticks``).
    """
    pd = _details(u, "prompt_tokens_details", "input_tokens_details", "input_token_details")
    cd = _details(u, "completion_tokens_details", "output_tokens_details", "output_token_details")
    prompt = count(u.get("prompt_tokens"))
    openai_named = prompt is not None
    if prompt is None:
        prompt = count(u.get("input_tokens"))
    completion = count(u.get("completion_tokens"))
    if completion is None:
        completion = count(u.get("output_tokens"))
    total = count(u.get("total_tokens"))
    reads = count(pd.get("cached_tokens"))  # OpenAI, Azure, Mistral, Groq, Fireworks, vLLM...
    writes = count(pd.get("cache_write_tokens"))  # OpenAI GPT-5.6+, OpenRouter
    reasoning = count(cd.get("reasoning_tokens"))
    write_1h = cost = searches = None
    native = derived = beside = False
    if not u.keys().isdisjoint(_EXTENSIONS):
        # Anthropic's own fields sit on usage itself and count beside input_tokens, not in it.
        native_read = count(u.get("cache_read_input_tokens"))
        native_write = count(u.get("cache_creation_input_tokens"))
        breakdown = u.get("cache_creation")
        if isinstance(breakdown, dict):
            write_1h = count(breakdown.get("ephemeral_1h_input_tokens"))
            five = count(breakdown.get("ephemeral_5m_input_tokens"))
            native_write = larger(native_write, _sum(five, write_1h))
        native = native_read is not None or native_write is not None
        hit = count(u.get("prompt_cache_hit_tokens"))  # DeepSeek: prompt = hit + miss
        flat_read = count(u.get("cached_tokens"))  # a flat field (Together, relays)
        flat_write = count(u.get("cache_write_tokens"))
        top_read = count(u.get("cache_read_tokens"))
        beside = native or any(n is not None for n in (flat_read, flat_write, top_read))
        reads = larger(reads, native_read, hit, flat_read, top_read)
        writes = larger(writes, native_write, flat_write)
        reasoning = larger(reasoning, count(u.get("reasoning_tokens")))
        if prompt is None:
            prompt = _sum(hit, count(u.get("prompt_cache_miss_tokens")))
            derived = True
        cost = _cost(u)
        tools = u.get("server_tool_use")
        if isinstance(tools, dict):
            searches = count(tools.get("web_search_requests"))
    extra = (reads or 0) + (writes or 0)
    if prompt is not None and extra and not derived:
        # OpenAI's *_tokens_details counts are inside the prompt by definition; only counts on
        # usage itself (Anthropic's names, flat relay fields) may sit beside it, which a total
        # shows, or the dialect says when no total shows the opposite.
        beyond = None if total is None or completion is None else total - prompt - completion
        if (
            (native and not openai_named)
            or extra > prompt
            or (beside and (beyond == extra or (rules.cache_disjoint and beyond != 0)))
        ):
            prompt += extra
    total_usable = total is not None and bool(prompt)
    output = _billed_output(
        completion,
        reasoning,
        total - prompt if total is not None and prompt else None,
        outside=rules.reasoning_outside and not total_usable,
    )
    out_audio = count(cd.get("audio_tokens"))
    found = _build(
        prompt,
        reads,
        writes,
        write_1h,
        count(pd.get("audio_tokens")),
        larger(output, out_audio),
        reasoning,
        out_audio,
        cost,
    )
    if found is None or searches is None:
        return found
    return replace(found, web_search_requests=searches)


def read_gemini(m: dict[str, Any]) -> NormalizedUsage | None:
    """Gemini ``usageMetadata``: thoughts are outside ``candidatesTokenCount`` and billed as
    output; tool-use prompt tokens are input (ai.google.dev/api/generate-content)."""
    prompt = count(m.get("promptTokenCount"))
    tool = count(m.get("toolUsePromptTokenCount"))
    if prompt is not None and tool:
        prompt += tool
    thoughts = count(m.get("thoughtsTokenCount"))
    total = count(m.get("totalTokenCount"))
    output = _billed_output(
        count(m.get("candidatesTokenCount")),
        thoughts,
        total - prompt if total is not None and prompt else None,
        outside=True,
    )
    out_audio = _modality(m.get("candidatesTokensDetails"))
    return _build(
        prompt,
        count(m.get("cachedContentTokenCount")),
        None,
        None,
        _modality(m.get("promptTokensDetails")),
        larger(output, out_audio),
        thoughts,
        out_audio,
        None,
    )


def read_timings(t: dict[str, Any]) -> NormalizedUsage | None:
    """llama.cpp ``timings``: ``prompt_n`` counts only the tokens processed, ``cache_n`` the
    ones reused from the KV cache (ggml-org/llama.cpp#15827)."""
    processed = count(t.get("prompt_n"))
    cached = count(t.get("cache_n"))
    prompt = None if processed is None else processed + (cached or 0)
    return _build(prompt, cached, None, None, None, count(t.get("predicted_n")), None, None, None)


def read_counts(prompt: int | None, output: int | None) -> NormalizedUsage | None:
    """Bare counts: Ollama's ``prompt_eval_count`` / ``eval_count`` (ollama docs/api.md) and
    llama.cpp's ``tokens_evaluated`` / ``tokens_predicted`` (tools/server README)."""
    return _build(prompt, None, None, None, None, output, None, None, None)


def _billed_output(
    completion: int | None, reasoning: int | None, beyond_prompt: int | None, *, outside: bool
) -> int | None:
    """max(completion, completion + reasoning when reasoning is outside it, total - prompt).

    OpenAI's reasoning_tokens are inside completion_tokens (BerriAI/litellm#18599); Gemini
    and xAI report them beside it, visible in total_tokens (mozilla-ai/any-llm#1290,
    router-for-me/CLIProxyAPI#5733). Reasoning above completion cannot be a subset of it.
    """
    best = completion
    if reasoning is not None:
        if completion is None:
            best = reasoning
        elif outside or reasoning > completion:
            best = completion + reasoning
    if beyond_prompt is not None and beyond_prompt >= 0:
        best = larger(best, beyond_prompt)
    return best


def _build(
    prompt: int | None,
    cached: int | None,
    writes: int | None,
    write_1h: int | None,
    prompt_audio: int | None,
    output: int | None,
    reasoning: int | None,
    out_audio: int | None,
    cost: int | None,
) -> NormalizedUsage | None:
    if prompt is None and output is None and cached is None and writes is None and cost is None:
        return None
    if prompt is not None:
        cached = clip(cached, prompt)
        writes = clip(writes, prompt - (cached or 0))
        prompt_audio = clip(prompt_audio, prompt)
    return NormalizedUsage(
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=writes,
        cache_write_1h_tokens=clip(write_1h, writes),
        prompt_audio_tokens=prompt_audio,
        output_tokens=output,
        reasoning_tokens=reasoning,
        output_audio_tokens=out_audio,
        upstream_cost_nanos=cost,
    )


def _cost(u: dict[str, Any]) -> int | None:
    ticks = count(u.get("cost_in_usd_ticks"))
    if ticks is not None:
        return -(-ticks // TICKS_PER_NANO)
    raw = u.get("cost")
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal | str):
        return None
    try:
        # repr of a float is the shortest decimal that reads back as it: exact enough for an
        # informational figure, and no float arithmetic touches the nanos.
        usd = raw if isinstance(raw, Decimal) else Decimal(str(raw))
        nanos = (usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING)
    except (ArithmeticError, ValueError):
        return None
    return int(nanos) if nanos.is_finite() and nanos >= 0 else None


def _modality(parts: object) -> int | None:
    """The AUDIO entry of a Gemini ``ModalityTokenCount`` list."""
    if not isinstance(parts, list):
        return None
    found = None
    for part in parts:
        if isinstance(part, dict) and part.get("modality") == "AUDIO":
            found = _sum(found, count(part.get("tokenCount")))
    return found


def _details(u: dict[str, Any], *names: str) -> Mapping[str, Any]:
    for name in names:
        d = u.get(name)
        if isinstance(d, dict):
            return d
    return _EMPTY


def count(value: object) -> int | None:
    """A token count, or None: bools, negatives, fractions and strings are not counts."""
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is float and value >= 0 and value.is_integer():
        return int(value)
    return None


def larger(*values: int | None) -> int | None:
    """The largest known value; None only when none is known."""
    best = None
    for v in values:
        if v is not None and (best is None or v > best):
            best = v
    return best


def _sum(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


def clip(value: int | None, limit: int | None) -> int | None:
    """``value`` capped at ``limit`` (a subset cannot exceed its parent); None stays None."""
    if value is None or limit is None:
        return value
    return min(value, max(limit, 0))

"""What a finished call is billed for: the usage it reported, checked and completed with local
counts, priced into its usage record (pure apart from tokenizing, which runs only when a count
is needed).

``usage_source`` of the record says where the billed counts came from:

=========================  ===================================================================
``upstream``               the provider's usage, as reported (normalized, every dialect)
``counted``                no usage reported: the prompt and the produced text were counted
                           with tiktoken
``upstream_prompt_counted``  the reported prompt was missing, zero or implausibly small for
                           the prompt sent (``usage_dialects.plausible_prompt``, e.g. Ollama's
                           ``prompt_tokens: 0`` on a cached prompt): the prompt was counted,
                           the rest is as reported
``upstream_output_counted``  no output count was reported, or the stream ended early and the
                           text it delivered counts more than its last report: the produced
                           text was counted, the prompt is as reported
=========================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

import orjson

from gateway import tokens
from gateway.catalog import Model, Provider
from gateway.deployments import Deployment
from gateway.endpoints import Endpoint
from gateway.pricing import Usage, cost
from gateway.proxy.attribution import NONE as NO_ATTRIBUTION
from gateway.proxy.attribution import Attribution
from gateway.quotes import Quote
from gateway.records import UsageRecord
from gateway.usage_dialects import NormalizedUsage, plausible_prompt, with_prompt

UPSTREAM: Final = "upstream"
COUNTED: Final = "counted"
PROMPT_COUNTED: Final = "upstream_prompt_counted"
OUTPUT_COUNTED: Final = "upstream_output_counted"
USAGE_SOURCES: Final = (UPSTREAM, COUNTED, PROMPT_COUNTED, OUTPUT_COUNTED)
# (prompt counted, output counted) -> usage_source
_SOURCES: Final = {
    (False, False): UPSTREAM,
    (True, False): PROMPT_COUNTED,
    (False, True): OUTPUT_COUNTED,
    (True, True): COUNTED,
}


@dataclass(frozen=True, slots=True)
class LocalPrompt:
    """Our count of the prompt sent: ``tokens`` is what is billed when the provider's count
    cannot be (media parts at a flat allowance each); ``text`` leaves media out, so that a
    provider counting a small image at its real size is never judged implausible."""

    tokens: int
    text: int


@dataclass(frozen=True, slots=True)
class Billed:
    usage: Usage
    source: str


# An upstream that served nothing (an error, unreachable): a record, no charge.
NOTHING: Final = Billed(Usage(prompt_tokens=0), UPSTREAM)


class Local(Protocol):
    """Our own counts of one call, each run only when asked (tokenizing costs ~0.1 us a
    byte on the event loop)."""

    @property
    def prompt_bound(self) -> int:
        """An upper bound of ``prompt().text`` known for free (the admission quote's)."""

    def estimate(self) -> int:
        """``prompt().text``, or for a long prompt an estimate of it from samples."""

    def prompt(self) -> LocalPrompt: ...

    def output(self) -> int:
        """The produced text's tokens, each choice counted on its own."""

    def searches(self) -> int:
        """The web searches the produced answer shows it made."""


def billed_usage(
    reported: NormalizedUsage | None, local: Local, *, produces_output: bool, complete: bool
) -> Billed:
    """The counts to bill, and where they came from.

    A reported prompt is judged (``plausible_prompt``) against the cheapest figure that can
    settle it: ``local.prompt_bound`` (plausible against an upper bound is plausible against
    the count), then ``local.estimate()``; only a prompt still implausible, missing or 0 is
    counted (``local.prompt()``) and, if implausible against that count too, billed at it.
    ``complete`` is False when the answer ended early (cut, client gone): a cumulative report
    may then lag what was delivered, so the output billed is the larger of the report and the
    produced text, and so is the count of web searches.
    """
    if reported is None:
        output = local.output() if produces_output else 0
        usage = Usage(
            prompt_tokens=local.prompt().tokens,
            completion_tokens=output,
            web_search_requests=local.searches() if produces_output else 0,
        )
        return Billed(usage, COUNTED)
    prompt = reported.prompt_tokens
    prompt_counted = False
    if not plausible_prompt(prompt, local.prompt_bound) and not (
        prompt and plausible_prompt(prompt, local.estimate())
    ):
        counted = local.prompt()
        if not plausible_prompt(prompt, counted.text):
            reported = with_prompt(reported, counted.tokens)
            prompt_counted = True
    reported_output = reported.output_tokens
    output = reported_output or 0
    output_counted = False
    if produces_output and (reported_output is None or not complete):
        produced = local.output()
        if reported_output is None or produced > reported_output:
            output, output_counted = produced, True
        # A search made before the cut is billed upstream though no report counted it.
        searches = local.searches()
        if searches > (reported.web_search_requests or 0):
            reported = replace(reported, web_search_requests=searches)
    return Billed(_usage(reported, output), _SOURCES[prompt_counted, output_counted])


class LocalCounts:
    """``Local`` for a call of ``model`` at ``endpoint``: ``payload`` as sent upstream,
    ``quote`` from admission (whose count is reused when it is exact), ``texts`` the produced
    text per choice, read only when the output is counted."""

    def __init__(
        self,
        model: Model,
        endpoint: Endpoint,
        payload: dict[str, Any],
        quote: Quote,
        texts: Callable[[], Sequence[str]],
        searches: Callable[[], int] = lambda: 0,
    ) -> None:
        self._model = model
        self._endpoint = endpoint
        self._payload = payload
        self._quote = quote
        self._texts = texts
        self.searches = searches
        self._prompt: LocalPrompt | None = None
        self._bound: int | None = None

    @property
    def prompt_bound(self) -> int:
        # The quote's bound counts the whole body's bytes (JSON syntax included); the text's
        # own bytes are a bound about half as high on a short chat, which is what lets an
        # honest report be judged plausible without running the tokenizer on every call.
        if self._bound is None:
            self._bound = min(
                self._quote.prompt_tokens, tokens.text_bound(self._endpoint, self._payload)
            )
        return self._bound

    def prompt(self) -> LocalPrompt:
        if self._prompt is None:
            counted = (
                self._quote.prompt_tokens
                if self._quote.exact
                else tokens.count_prompt(self._encoder(), self._endpoint, self._payload)
            )
            media = tokens.media_parts(self._endpoint, self._payload) * tokens.TOKENS_PER_IMAGE
            self._prompt = LocalPrompt(tokens=counted, text=max(counted - media, 0))
        return self._prompt

    def estimate(self) -> int:
        # Past a few thousand tokens, samples of the body judge plausibility well enough
        # (the rule has 4x slack) at a bounded cost.
        if self._quote.exact or self._quote.prompt_tokens <= tokens.SAMPLED_ABOVE:
            return self.prompt().text
        return tokens.estimate_tokens(self._encoder(), orjson.dumps(self._payload))

    def output(self) -> int:
        encoder = self._encoder()
        return sum(tokens.count_text(encoder, t) for t in self._texts())

    def _encoder(self) -> tokens.Encoder:
        # Looked up only when something is counted: a call whose answer reports its usage
        # never loads tiktoken's tables (~45 MB of a process's memory).
        return tokens.model_encoder(self._model.upstream_model, self._model.encoding)


def _usage(n: NormalizedUsage, output: int) -> Usage:
    """Known counts, parts clipped to their whole in the order ``pricing.cost`` shares them
    out, so the record's own numbers reproduce its cost."""
    prompt = n.prompt_tokens or 0
    cached = _part(n.cached_tokens, prompt)
    writes = _part(n.cache_write_tokens, prompt - cached)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        cached_tokens=cached,
        reasoning_tokens=_part(n.reasoning_tokens, output),
        cache_write_tokens=writes,
        cache_write_1h_tokens=_part(n.cache_write_1h_tokens, writes),
        prompt_audio_tokens=_part(n.prompt_audio_tokens, prompt - cached - writes),
        output_audio_tokens=_part(n.output_audio_tokens, output),
        web_search_requests=n.web_search_requests or 0,
    )


def _part(value: int | None, limit: int) -> int:
    return min(value or 0, max(limit, 0))


def usage_record(
    billed: Billed,
    model: Model,
    *,
    request_id: str,
    user_id: str,
    key_id: str | None,
    endpoint: str,
    status: str,
    latency_ms: int,
    reserved: int,
    deployment: Deployment[Provider] | None = None,
    attribution: Attribution = NO_ATTRIBUTION,
) -> UsageRecord:
    """The record of one call: ``billed`` priced at ``model``'s prices (its long-context tier
    when the prompt reaches one), with the unit prices charged and the overdraft, the part of
    the cost above the ``reserved`` nano-USD (billed all the same: README, "Overdraft").
    ``deployment``: the one whose answer the call got (the model's first when not given);
    whichever it is, the model's price applies. ``attribution``: who and what the call was
    for (``gateway.proxy.attribution``)."""
    served = deployment or model.deployments[0]
    usage = billed.usage
    charged = model.price.at(usage.prompt_tokens)
    total = cost(model.price, usage)
    return UsageRecord(
        request_id=request_id,
        user_id=user_id,
        key_id=key_id,
        model=model.name,
        provider=served.provider.name,
        deployment=served.name,
        endpoint=endpoint,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        prompt_audio_tokens=usage.prompt_audio_tokens,
        output_audio_tokens=usage.output_audio_tokens,
        web_search_requests=usage.web_search_requests,
        price_input=charged.input,
        price_cached_input=charged.cached_input,
        price_output=charged.output,
        price_cache_write=charged.cache_write,
        price_cache_write_1h=charged.cache_write_1h,
        price_audio_input=charged.audio_input,
        price_audio_output=charged.audio_output,
        price_web_search=model.price.web_search,
        cost=total,
        overdraft=max(total - reserved, 0),
        status=status,
        usage_source=billed.source,
        latency_ms=latency_ms,
        end_user=attribution.end_user,
        tags=attribution.tags,
        session_id=attribution.session_id,
    )

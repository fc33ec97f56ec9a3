"""Upstream HTTP: one aiohttp session per provider base URL, keep-alive pooled.

aiohttp, not httpx, on the hot path: measured here, httpx loses most of its throughput as
concurrency grows (DESIGN.md §5). aiohttp's errors are translated to ours at this boundary.
"""

from __future__ import annotations

import aiohttp

from gateway.catalog import Provider
from gateway.errors import ProviderNotConfigured, UpstreamError, UpstreamTimeout
from gateway.provider_keys import missing


class Upstreams:
    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, provider: Provider) -> aiohttp.ClientSession:
        session = self._sessions.get(provider.base_url)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,  # bytes pass through as the upstream sent them
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[provider.base_url] = session
        return session

    async def post(
        self,
        provider: Provider,
        path: str,
        body: bytes,
        *,
        request_id: str,
        accept: str,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> aiohttp.ClientResponse:
        """POSTs ``body`` to ``path`` under the provider's base URL with its key (in the header
        its ``api`` names) and ``extra`` headers (the caller's, e.g. ``anthropic-version``)."""
        headers = {
            **dict(extra),
            "Content-Type": "application/json",
            "Accept": accept,
            "Accept-Encoding": "identity",
            "X-Request-Id": request_id,
        }
        if provider.api_key:
            auth = provider.auth
            headers[auth.key_header] = auth.key_scheme + provider.api_key
        elif missing(provider):
            # Routing passes such a deployment over; a direct caller is refused the same way.
            raise ProviderNotConfigured(
                f"upstream {provider.name} is not configured: {missing(provider)} is not set on "
                "the gateway"
            )
        try:
            return await self._session(provider).post(
                f"{provider.base_url}/{path}", data=body, headers=headers
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"upstream {provider.name} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {provider.name} is unreachable") from exc

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

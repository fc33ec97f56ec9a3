"""The built-in fake OpenAI-compatible upstream: ``upstream`` is the aiohttp app, ``runner``
runs it (in this loop, in a background thread, or as the ``gateway mock-upstream`` command)."""

"""The metering gateway: an OpenAI-compatible proxy that sells LLM access on prepaid credit."""

__version__ = "0.1.0"

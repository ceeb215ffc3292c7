"""detcheck: measure how non-deterministic an LLM endpoint's token log-probabilities are."""

__version__ = "0.1.0"

"""tokenmeter: a metering reverse proxy for LLM APIs. Importing this package has no side effects."""

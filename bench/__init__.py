"""tokenmeter's benchmark harness: how much the meter costs on the hot path, side by side.

Run ``.venv/bin/python -m bench.run --quick`` (see bench/README.md). Nothing here is imported by
the proxy or the tests.
"""

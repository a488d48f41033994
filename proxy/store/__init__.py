"""Where usage is stored: the schema, the engine and migrations, the recorder, the rollup.

- ``tables``/``types``: the Core schema (exact money, UTC times) for SQLite and PostgreSQL.
- ``engine``: ``make_engine(url)``; ``upgrade``/``current``/``downgrade`` run the ``migrations``.
- ``rows``: ``UsageEvent`` -> row, and a row's JSON form in the spool.
- ``writes``: the one idempotent write path (insert + rollup, one transaction).
- ``recorder``/``spool``: every event written ahead to local disk, then shipped in batches
  (``batches``: time limit, quarantine of refused rows), surviving outages and crashes.
- ``quarantine``: rows the database refused, kept for ``tokenmeter db quarantine``.
- ``rollup``: the hourly and daily rollups, their rebuild, and purging raw events.

Importing this package imports nothing else and creates nothing.
"""

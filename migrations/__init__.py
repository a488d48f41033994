"""tokenmeter's Alembic scripts, a package only so they ship in the wheel: as ``proxy.migrations``
(pyproject.toml maps it to this directory), never as a top-level ``migrations``.

Run them through ``proxy.store.engine.upgrade/downgrade/current`` (or ``tokenmeter db …``);
there is no ``alembic.ini``. ``env.py`` uses the connection those functions hand it.
"""

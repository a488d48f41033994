"""tokenmeter's Alembic scripts, a package only so they ship in the wheel.

Run them through ``proxy.store.engine.upgrade/downgrade/current`` (or ``tokenmeter db …``);
there is no ``alembic.ini``. ``env.py`` uses the connection those functions hand it.
"""

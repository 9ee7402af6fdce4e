"""Alembic's environment for the central store.

Normally run through :func:`central.db.upgrade`, which hands in an open connection
(already in a transaction and, on PostgreSQL, holding the migration lock) as
``config.attributes["connection"]``. Without one it connects to
``sqlalchemy.url`` itself; ``--sql`` (offline) mode prints the DDL for that URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from central.db import SQLITE, create_engine, database_url, metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == SQLITE,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url to the database to generate SQL for")
    context.configure(url=database_url(url), target_metadata=metadata, literal_binds=True,
                      render_as_batch=url.startswith(SQLITE))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url, or migrate through central.db.upgrade")
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

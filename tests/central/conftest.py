"""Fixtures for the centre's tests: every test runs on SQLite AND PostgreSQL.

``database_url`` is parametrized: a SQLite file in ``tmp_path``, and a fresh
PostgreSQL database created for the test and dropped after it. The PostgreSQL
server is taken from ``NYCKELFRI_TEST_PG`` (a database on it we may connect to for
``CREATE DATABASE``), default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
When that server is unreachable the PostgreSQL tests FAIL, never skip: CI must
exercise PostgreSQL.

Reuse from other test modules in this folder by name: ``database_url``,
``central_clock`` (a :class:`SteppingClock`) and ``central_store`` (a migrated
:class:`CentralStore` on ``database_url`` with ``central_clock``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from central.store import CentralStore

PG_ENV = "NYCKELFRI_TEST_PG"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
CENTRE_T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class SteppingClock:
    """The centre's clock in tests: stands still until told to move."""

    def __init__(self, start: datetime = CENTRE_T0) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at


def pg_base_url() -> sa.URL:
    url = make_url(os.environ.get(PG_ENV, DEFAULT_PG))
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    base = pg_base_url()
    name = f"nyckelfri_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 5})
    try:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            pytest.fail(
                f"PostgreSQL at {base.render_as_string(hide_password=True)} is unreachable "
                f"({str(exc.orig).strip().splitlines()[0]}). The PostgreSQL tests must run: "
                f"start PostgreSQL, or set {PG_ENV} to a server where this user may "
                "CREATE DATABASE.",
                pytrace=False,
            )
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a centre's database lives: a SQLite file path, or a fresh PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "centre.db")
    else:
        with fresh_pg_database() as url:
            yield url


@pytest.fixture
def central_clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def central_store(database_url: str, central_clock: SteppingClock) -> Iterator[CentralStore]:
    store = CentralStore.open(database_url, clock=central_clock)
    try:
        yield store
    finally:
        store.close()

"""Outage or the rows' fault: decided by SQLSTATE (and SQLite's result code), never by class."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from proxy.store.writes import error_code, is_rows_fault


def wrapped(orig: BaseException, kind: type[DBAPIError] = DBAPIError) -> DBAPIError:
    """As SQLAlchemy raises it: the driver's error as ``orig``."""
    return kind("INSERT …", {}, orig)


def pg(exc_class: type[asyncpg.PostgresError], message: str = "x") -> DBAPIError:
    return wrapped(exc_class(message))


def sqlite_error(kind: type[sqlite3.Error], code: int) -> sqlite3.Error:
    error = kind("refused")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (pg(asyncpg.NumericValueOutOfRangeError), "22003"),
        (pg(asyncpg.StringDataRightTruncationError), "22001"),
        (pg(asyncpg.NotNullViolationError), "23502"),
        (pg(asyncpg.UniqueViolationError), "23505"),
        (wrapped(sqlite_error(sqlite3.IntegrityError, 1299)), "sqlite:1299"),  # NOT NULL
        (wrapped(sqlite_error(sqlite3.IntegrityError, 20)), "sqlite:20"),  # MISMATCH
        (OverflowError("Python int too large to convert to SQLite INTEGER"), "22003"),
    ],
)
def test_data_and_constraint_errors_are_the_rows_fault(error: BaseException, code: str) -> None:
    assert error_code(error) == code
    assert is_rows_fault(error)


@pytest.mark.parametrize(
    "error",
    [
        pg(asyncpg.AdminShutdownError),  # 57P01: pg_terminate_backend, server restart
        pg(asyncpg.CannotConnectNowError),  # 57P03: shutting down, starting up
        pg(asyncpg.TooManyConnectionsError),  # 53300
        pg(asyncpg.ReadOnlySQLTransactionError),  # 25006: a standby after failover
        pg(asyncpg.ObjectNotInPrerequisiteStateError),  # 55000: ALLOW_CONNECTIONS false
        pg(asyncpg.SerializationError),  # 40001
        pg(asyncpg.DeadlockDetectedError),  # 40P01
        pg(asyncpg.UndefinedTableError),  # 42P01: not migrated yet
        pg(asyncpg.QueryCanceledError),  # 57014: statement_timeout
        pg(asyncpg.DiskFullError),  # 53100
        wrapped(sqlite_error(sqlite3.OperationalError, 5), OperationalError),  # BUSY: locked
        wrapped(sqlite_error(sqlite3.OperationalError, 13), OperationalError),  # FULL
        wrapped(asyncpg.InterfaceError("connection is closed")),  # no SQLSTATE at all
        wrapped(RuntimeError("something new")),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
)
def test_anything_else_is_an_outage(error: BaseException) -> None:
    assert not is_rows_fault(error)


def test_the_class_does_not_decide() -> None:
    """SQLAlchemy's IntegrityError around an outage code is still an outage, and a plain
    DBAPIError around a constraint violation is still the rows' fault."""
    assert not is_rows_fault(wrapped(asyncpg.AdminShutdownError("x"), IntegrityError))
    assert is_rows_fault(wrapped(asyncpg.CheckViolationError("x"), DBAPIError))

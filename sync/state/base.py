"""The state store's connection handling: one engine, transactions, batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
)

from sync.state.rows import (
    _connect_args,
    _sqlite_pragmas,
)
from sync.state.tables import (
    metadata,
)


class _Store:
    """The state store's connection handling: one engine, transactions, batches."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, connect_args=_connect_args(url))
        self._local = threading.local()  # the open batch's connection, per thread
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @contextmanager
    def batch(self, lazy_sync: bool = False) -> Iterator[None]:
        """Every read and write of this thread inside the block shares one transaction,
        committed at the end of the block (one commit instead of one per method).
        Nested blocks join the outer one. Keep CRM calls out of a batch: it holds the
        database's write lock from its first write until it ends.

        ``lazy_sync``: the commit does not wait for the disk (SQLite ``synchronous=NORMAL``
        in WAL mode, PostgreSQL ``synchronous_commit=off``); a power loss may undo it,
        never a crash of the process. For writes a later ordinary commit covers, such as
        a chunk's mirror rows before its pull checkpoint: that commit makes the log
        durable up to and including them.
        """
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.engine.connect() as conn:
            dialect = conn.dialect.name
            restore = None
            if lazy_sync and dialect == "sqlite":
                restore = conn.exec_driver_sql("PRAGMA synchronous").scalar()
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.commit()
            try:
                with conn.begin():
                    if lazy_sync and dialect == "postgresql":
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    self._local.conn = conn
                    try:
                        yield
                    finally:
                        self._local.conn = None
            finally:
                if restore is not None:
                    conn.exec_driver_sql(f"PRAGMA synchronous={int(restore)}")
                    conn.commit()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction: the batch's, when this thread is in one; else a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection for reads: the batch's (it sees the batch's writes), else a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    def create_schema(self) -> None:
        """Create missing tables (idempotent)."""
        metadata.create_all(self.engine)

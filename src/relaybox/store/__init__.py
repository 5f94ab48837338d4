"""Store drivers behind one interface; :func:`open_store` picks one from a URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from relaybox.errors import StoreUnavailable
from relaybox.store.base import Connector, Store, Tx
from relaybox.store.migrations import check_schema, migrate

DEFAULT_URL = "sqlite:///relaybox.db"

__all__ = ["DEFAULT_URL", "Store", "Tx", "open_store"]


def open_store(
    url: str = DEFAULT_URL, *, run_migrations: bool = True, read_only: bool = False
) -> Store:
    """Open the store at ``url`` and bring its schema up to date.

    ``sqlite:///relaybox.db`` is a file relative to the working directory,
    ``sqlite:////abs/path.db`` an absolute one; ``postgresql://user@host:port/db`` a server.

    ``read_only=True`` opens it for inspection: nothing is ever created, migrated or written
    (SQLite: ``mode=ro``, or ``immutable=1`` on a read-only filesystem; PostgreSQL: read-only
    transactions). A missing database raises :class:`~relaybox.errors.StoreNotFound`, a
    database without relaybox's schema :class:`~relaybox.errors.NotARelayboxStore`, a schema
    older or newer than this code :class:`~relaybox.errors.SchemaMismatch` naming the
    migration. Only :meth:`Store.read` works on such a store.
    """
    store = Store(_connector_for(url, read_only=read_only))
    try:
        if read_only:
            check_schema(store)
        elif run_migrations:
            migrate(store)
    except BaseException:
        store.close()
        raise
    return store


def _connector_for(url: str, *, read_only: bool = False) -> Connector:
    if url.startswith("sqlite://"):
        from relaybox.store.sqlite import SqliteConnector

        path = url[len("sqlite://") :]
        if not path.startswith("/") or path == "/":
            raise StoreUnavailable(
                f"cannot open store {url!r}: expected sqlite:///relative.db or sqlite:////abs.db"
            )
        path = path[1:]
        if path != ":memory:" and Path(path).is_dir():
            raise StoreUnavailable(f"cannot open store {url!r}: {path} is a directory")
        return SqliteConnector(path, read_only=read_only)
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        from relaybox.store.postgres import PostgresConnector

        return PostgresConnector(url, read_only=read_only)
    raise StoreUnavailable(
        f"cannot open store {url!r}: unknown scheme {scheme or '(none)'!r};"
        " use sqlite:///path.db or postgresql://user@host:port/db"
    )

"""Store drivers behind one interface; :func:`open_store` picks one from a URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from relaybox.errors import StoreUnavailable
from relaybox.store.base import Connector, Store, Tx
from relaybox.store.migrations import migrate

DEFAULT_URL = "sqlite:///relaybox.db"

__all__ = ["DEFAULT_URL", "Store", "Tx", "open_store"]


def open_store(url: str = DEFAULT_URL, *, run_migrations: bool = True) -> Store:
    """Open the store at ``url`` and bring its schema up to date.

    ``sqlite:///relaybox.db`` is a file relative to the working directory,
    ``sqlite:////abs/path.db`` an absolute one; ``postgresql://user@host:port/db`` a server.
    """
    store = Store(_connector_for(url))
    if run_migrations:
        try:
            migrate(store)
        except BaseException:
            store.close()
            raise
    return store


def _connector_for(url: str) -> Connector:
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
        return SqliteConnector(path)
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        from relaybox.store.postgres import PostgresConnector

        return PostgresConnector(url)
    raise StoreUnavailable(
        f"cannot open store {url!r}: unknown scheme {scheme or '(none)'!r};"
        " use sqlite:///path.db or postgresql://user@host:port/db"
    )

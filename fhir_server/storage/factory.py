"""Choose and build the ResourceStore for a database URL (`FHIR_SERVER_DATABASE_URL`)."""

from __future__ import annotations

import os

from fhir_server.storage.base import ResourceStore
from resources.errors import Invalid


def open_store(url: str) -> ResourceStore:
    """Build (not start) the store for `url`.

    Args:
        url: `sqlite:///relative/or/absolute/path.db`, `sqlite:///:memory:`, or
            `mongodb://host[:port]/dbname` (also `mongodb+srv://`).

    Raises:
        Invalid: for any other scheme.
    """
    if url.startswith("sqlite:"):
        from fhir_server.storage.sqlite import SQLiteStore

        return SQLiteStore(default_path_for(url))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from fhir_server.storage.mongo import MongoStore

        return MongoStore.from_url(url)
    raise Invalid(f"Unsupported database URL scheme in {url.split(':', 1)[0]!r}")


def default_path_for(url: str) -> str:
    """The file path of a `sqlite:///path` URL (`sqlite:///:memory:` -> `:memory:`)."""
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return path if path == ":memory:" else os.path.expanduser(path)

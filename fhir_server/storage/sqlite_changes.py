"""Whether anything was committed to a WAL-mode SQLite file since a moment, for the price of
reading 96 bytes of shared memory: no SQL statement, no lock, no system call.

Every connection to a WAL database, in every process, finds the end of the log through the
WAL-index header at the start of the `-shm` file, which SQLite maps into each process. A
commit (by any connection, this process's or another's) writes that header before it
returns, with `iChange` incremented and the new `mxFrame` and frame checksum; a log restarted
by a checkpoint gets new salts (and `iChange` incremented again). So while the header reads
the same, no commit has become visible to any reader since. The header is kept twice (bytes
0-47 and 48-95); a writer updates the second copy and then the first, and readers trust it
only when both agree, as SQLite's own readers do. Source: SQLite "WAL-mode File Format"
(https://www.sqlite.org/walformat.html, §2.2 "The WAL-Index Header" / `WalIndexHdr` in
wal.c), a layout unchanged since version 3.7.0 (`iVersion` 3007000).

`PRAGMA data_version` answers the same question through SQL, but it opens a read transaction
(two `fcntl` calls on the `-shm` file and a statement) - about a tenth of a cached SMART read
(`bench/rest.py`). It stays the fallback where this cannot answer: an in-memory database, a
file whose `-shm` cannot be opened, or a header being written at that instant.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
from dataclasses import dataclass

HEADER_BYTES = 48
"""One copy of the WAL-index header (`WalIndexHdr`)."""
WALINDEX_VERSION = 3007000
"""`iVersion` of every WAL-index SQLite has written since 3.7.0."""
_VERSION = WALINDEX_VERSION.to_bytes(4, sys.byteorder)  # as stored: native byte order


@dataclass
class _Mapping:
    """This process's descriptor and mapping of one `-shm` file, shared by its WalChanges."""

    fd: int
    view: mmap.mmap | None
    users: int = 0


_MAPPINGS: dict[str, _Mapping] = {}
_MAPPINGS_LOCK = threading.Lock()


class WalChanges:
    """The WAL-index header of one database file, read through a shared read-only mapping.

    The `-shm` file's descriptor stays open until the last WalChanges of that file in this
    process is closed: closing any descriptor of a file drops every POSIX lock the process
    holds on it, SQLite's own included (sqlite.org/howtocorrupt.html §2.2). A process that
    lost its shared lock on the `-shm` file's "dead man switch" byte looks gone to the next
    connection that opens the file, which then starts the `-shm` over (truncates it) under
    the processes still using it: they died of SIGBUS, seen with bench/booking.py when this
    class closed its descriptor right after mapping it. So `close` only after the store's
    connections are closed; a connection to the same file opened outside the store in this
    process loses its `-shm` locks at that moment.

    Args:
        db_path: the database file; its `-shm` file must exist (it does while a connection
            to the file in WAL mode is open: open this after the store's first connection).
            Symbolic links are resolved, as SQLite resolves them when it names the file.
    """

    def __init__(self, db_path: str) -> None:
        self._path: str | None = None
        path = os.path.realpath(db_path) + "-shm"
        with _MAPPINGS_LOCK:
            mapping = _MAPPINGS.get(path)
            if mapping is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    return
                mapping = _MAPPINGS[path] = _Mapping(fd, _view(fd))
            mapping.users += 1
        self._path = path
        self._view = mapping.view

    def stamp(self) -> bytes | None:
        """The header now (48 bytes): equal to an earlier stamp only if nothing was committed
        in between; None when it cannot tell (no mapping, a header not initialised or being
        written, or a layout this code does not know)."""
        if self._path is None or self._view is None:
            return None
        head = self._view[: 2 * HEADER_BYTES]
        first = head[:HEADER_BYTES]
        if first != head[HEADER_BYTES:] or first[12] != 1 or first[:4] != _VERSION:
            return None  # the copies disagree, not initialised (isInit), or another layout
        return first

    def close(self) -> None:
        """Stop reading (stamp() answers None afterwards); the last WalChanges of the file in
        this process unmaps it and closes the descriptor (see the class docstring: after
        the store's connections are closed)."""
        path, self._path = self._path, None
        if path is None:
            return
        with _MAPPINGS_LOCK:
            mapping = _MAPPINGS[path]
            mapping.users -= 1
            if mapping.users:
                return
            del _MAPPINGS[path]
        if mapping.view is not None:
            mapping.view.close()
        os.close(mapping.fd)


def _view(fd: int) -> mmap.mmap | None:
    """A read-only mapping of the two header copies, or None (a file too short, or one that
    cannot be mapped)."""
    try:
        if os.fstat(fd).st_size >= 2 * HEADER_BYTES:
            return mmap.mmap(fd, 2 * HEADER_BYTES, access=mmap.ACCESS_READ)
    except OSError:
        pass
    return None

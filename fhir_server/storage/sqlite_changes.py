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

HEADER_BYTES = 48
"""One copy of the WAL-index header (`WalIndexHdr`)."""
WALINDEX_VERSION = 3007000
"""`iVersion` of every WAL-index SQLite has written since 3.7.0."""
_VERSION = WALINDEX_VERSION.to_bytes(4, sys.byteorder)  # as stored: native byte order


class WalChanges:
    """The WAL-index header of one database file, read through a shared read-only mapping.

    Args:
        db_path: the database file; its `-shm` file must exist (it does while a connection
            to the file in WAL mode is open: open this after the store's first connection).
            Symbolic links are resolved, as SQLite resolves them when it names the file.
    """

    def __init__(self, db_path: str) -> None:
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(os.path.realpath(db_path) + "-shm", os.O_RDONLY)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size >= 2 * HEADER_BYTES:
                self._map = mmap.mmap(fd, 2 * HEADER_BYTES, access=mmap.ACCESS_READ)
        except OSError:
            self._map = None
        finally:
            os.close(fd)

    def stamp(self) -> bytes | None:
        """The header now (48 bytes): equal to an earlier stamp only if nothing was committed
        in between; None when it cannot tell (no mapping, a header not initialised or being
        written, or a layout this code does not know)."""
        if self._map is None:
            return None
        head = self._map[: 2 * HEADER_BYTES]
        first = head[:HEADER_BYTES]
        if first != head[HEADER_BYTES:] or first[12] != 1 or first[:4] != _VERSION:
            return None  # the copies disagree, not initialised (isInit), or another layout
        return first

    def close(self) -> None:
        """Drop the mapping (stamp() answers None afterwards)."""
        if self._map is not None:
            self._map.close()
            self._map = None

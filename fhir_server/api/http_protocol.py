"""The HTTP/1.1 protocol `fhir-server serve` runs: uvicorn's httptools protocol with
TCP_NODELAY set on every connection.

asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP. With `--workers N`
uvicorn binds the listening socket as `socket.socket(family)` (proto 0) and hands it to the
workers, so their accepted connections kept Nagle's algorithm on: a response written as
headers, then body, waited for the client's delayed ACK (40 ms on Linux) before its last
segment left (measured: a 40 KB `$find-slots` answer took 46 ms on a kept-alive connection
instead of 5 ms). Setting the option here makes one worker and many behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["NoDelayHttpToolsProtocol"]


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` whose connections send at once (TCP_NODELAY)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

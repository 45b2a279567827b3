"""A small TCP proxy on loopback that can lose one COMMIT's reply (or the COMMIT itself).

``LossyProxy(upstream_port)`` listens on 127.0.0.1 (``port``, default a free one) and
forwards every connection to ``127.0.0.1:upstream_port``. ``arm(marker, forward=True)``: the
next client chunk that contains ``marker`` (the wire bytes of a COMMIT) is forwarded (or not,
``forward=False``); then that connection's reply is never delivered: the proxy waits
``settle`` seconds and closes both sides, so the client sees a lost connection after its
COMMIT. One shot: later connections (the probe's) pass untouched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

#: The COMMIT as each driver sends it: PostgreSQL's simple query message, MySQL's COM_QUERY.
POSTGRES_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
MYSQL_COMMIT = b"\x07\x00\x00\x00\x03COMMIT"


class LossyProxy:
    """Forwards loopback TCP connections; loses one armed COMMIT's reply."""

    def __init__(self, upstream_port: int, *, port: int = 0, settle: float = 0.5) -> None:
        self.upstream_port = upstream_port
        self.settle = settle
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self._marker: bytes | None = None
        self._forward = True
        self._then_down = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        #: How many COMMITs were intercepted (0 or 1).
        self.fired = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes, *, forward: bool = True, then_down: bool = False) -> None:
        """Intercept the next chunk holding ``marker``; ``then_down``: and stop accepting
        connections from then on (the database seems gone: a probe cannot reach it)."""
        with self._lock:
            self._marker, self._forward, self._then_down = marker, forward, then_down

    def _take(self, chunk: bytes) -> bool | None:
        """``None``: pass the chunk; else intercept it (``True``: forward it first)."""
        with self._lock:
            if self._marker is None or self._marker not in chunk:
                return None
            self._marker = None
            self.fired += 1
            return self._forward

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closed:
                client.close()
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            server.settimeout(None)
            self._sockets += (client, server)
            lost = threading.Event()
            threading.Thread(
                target=self._pump, args=(client, server, lost, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, lost, False), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, lost: threading.Event, upward: bool
    ) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if upward:
                    intercept = self._take(chunk)
                    if intercept is not None:
                        lost.set()  # from now on nothing reaches the client
                        if intercept:
                            sink.sendall(chunk)
                        time.sleep(self.settle)  # let the server act on it (or not)
                        if self._then_down:
                            self.close()
                        break
                if lost.is_set():
                    continue
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        """Stop accepting, and cut every connection still open."""
        self._closed = True
        with contextlib.suppress(OSError):  # wakes a thread blocked in accept() (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> LossyProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

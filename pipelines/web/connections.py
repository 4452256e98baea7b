"""A time limit on a request's headers, which uvicorn does not have.

uvicorn times out a kept-alive connection that stays idle between requests, but not one that
opens and sends nothing, nor one that sends its request line and headers a byte at a time:
each such client held a connection and its file descriptor for as long as it liked, and a few
hundred of them exhaust the process's descriptors (the slow-headers attack). As nginx's
client_header_timeout does, a connection whose next request's headers are not complete
HEADER_TIMEOUT_S after it opened, or after the first byte of that request, is closed. The
body has its own limit (recon.pipelines.web.uploads.UPLOAD_IDLE_S).
"""

from __future__ import annotations

HEADER_TIMEOUT_S = 30.0


def header_timeout_protocol(seconds: float = HEADER_TIMEOUT_S):
    """uvicorn's h11 protocol class, closing a connection whose request headers take longer
    than `seconds` to arrive; for uvicorn.Config(http=...)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._start_header_timer()  # a connection that sends nothing

        def data_received(self, data: bytes) -> None:
            waiting = self.conn.their_state is h11.IDLE
            if waiting and self._header_timer is None:  # the first byte of the next request
                self._start_header_timer()
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # its headers are complete
                self._stop_header_timer()

        def connection_lost(self, exc) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def _start_header_timer(self) -> None:
            self._stop_header_timer()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol

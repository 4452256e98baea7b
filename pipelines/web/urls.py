"""Checks of the server's network options: CORS origins, bind address, URL prefix."""

from __future__ import annotations

import errno
import ipaddress
import socket
from urllib.parse import urlsplit

from recon.pipelines.common.errors import BadInput


def check_origins(origins: list[str]) -> list[str]:
    """Explicit origins only (scheme://host[:port]); BadInput for '*' or anything else."""
    checked = []
    for origin in origins:
        parts = urlsplit(origin)
        if origin.strip() == "*" or "*" in origin:
            raise BadInput(
                "--cors-origin '*' is refused: name each origin, e.g. https://example.org"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise BadInput(
                f"--cors-origin {origin!r}: expected scheme://host[:port], e.g. https://example.org"
            )
        if parts.query or parts.fragment or parts.username:
            raise BadInput(f"--cors-origin {origin!r}: expected scheme://host[:port] only")
        checked.append(f"{parts.scheme}://{parts.netloc}")
    return checked


def check_bind(host: str, port: int) -> None:
    """BadInput when the port is out of range or the host is neither an address nor a name."""
    if not 0 < port < 65536:
        raise BadInput(f"--port {port}: expected 1-65535")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, port)
    except OSError as error:
        raise BadInput(f"--host {host!r}: cannot resolve ({error})") from error


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) for the server to listen on; BadInput when the
    address is in use or cannot be bound (a port below 1024 without the right, an address of
    another machine)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        if error.errno == errno.EADDRNOTAVAIL:  # the address is not one of this machine's
            raise BadInput(
                f"--host {host}: cannot listen on {host}:{port}: not an address of this machine"
            ) from error
        reason = "in use (another server?)" if error.errno == errno.EADDRINUSE else error.strerror
        raise BadInput(f"--port {port}: cannot listen on {host}:{port}: {reason}") from error
    return listening


def check_root_path(root_path: str) -> str:
    """'' or '/prefix' without a trailing slash."""
    root_path = root_path.strip().rstrip("/")
    if root_path and (not root_path.startswith("/") or "//" in root_path or "?" in root_path):
        raise BadInput(f"--root-path {root_path!r}: expected a path such as /recon")
    return root_path

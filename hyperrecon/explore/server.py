"""The explorer's HTTP API over the standard library's ``ThreadingHTTPServer`` (no HTTP parsing of our own).

Routes (GET only; every answer is JSON except the page; errors are ``{"error": message}`` with a 4xx status):

=====================================  ==========================================================================
``/``                                  the page (:mod:`.page`; inline CSS and JavaScript, nothing external)
``/api/info``                          models, slices (ids, thumbnails), λ axes, landscapes or curves
``/api/slice?slice=i``                 ground truth and input of slice ``i`` (PNG ``data:`` URLs)
``/api/render?model=&slice=&lam=``     reconstruction at λ (``lam=0.3`` or ``lam=0.3,0.7``), metrics, nearest
                                       baseline; ``client=&seq=`` opt in to coalescing (:mod:`.coalesce`)
``/api/diverse?model=&slice=``         most diverse good pair and range of reconstructions (seconds; cached)
=====================================  ==========================================================================

Bad values (λ outside [0, 1], NaN, a slice out of range, an unknown model, an unknown path such as
``/../models/x.pt``) get a 4xx answer naming the parameter and what is expected, and the server goes on. Nothing is
served from the file system and nothing is written anywhere. The ``Host`` header must name this server (an answer
to a page of another site that resolves its name to 127.0.0.1 is refused: DNS rebinding) when the server listens
on loopback, as it does by default.
"""

from __future__ import annotations

import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError, RunError
from .coalesce import SUPERSEDED, Busy, Coalescer
from .session import Explorer, RequestError

_SEQ_MAX = 2**53  # a JavaScript integer


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise RequestError(f"parameter '{name}' given {len(values)} times; expected once")
    return values[0]


class ExploreServer(ThreadingHTTPServer):
    """A threading HTTP server holding one :class:`Explorer`, its page and its :class:`Coalescer`."""

    daemon_threads = True
    allow_reuse_address = False  # a port in use must fail, not be shared
    request_queue_size = 64  # listen backlog: a burst of connections must not wait for a SYN retry (1 s)

    def __init__(self, address: tuple[str, int], explorer: Explorer, page: str, *, max_waiting: int = 8) -> None:
        self.explorer = explorer
        self.page = page.encode("utf-8")
        self.coalescer = Coalescer(max_waiting=max_waiting)
        self.info_bytes: bytes | None = None
        self._info_lock = threading.Lock()
        super().__init__(address, ExploreHandler)

    @property
    def url(self) -> str:
        host, port = cast("tuple[str, int]", self.server_address[:2])  # an IP socket: (host, port, ...)
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}/"

    def allowed_hosts(self) -> set[str] | None:
        """Host header values accepted on a loopback address; None (any) when listening on another address,
        where a remote browser names the machine as it knows it."""
        import ipaddress

        host, port = cast("tuple[str, int]", self.server_address[:2])
        if not ipaddress.ip_address(host).is_loopback:
            return None
        names = {str(host), "localhost", "127.0.0.1", "[::1]", f"[{host}]"}
        return {f"{n}:{port}" for n in names} | names

    def info(self) -> bytes:
        with self._info_lock:
            if self.info_bytes is None:
                self.info_bytes = json.dumps(self.explorer.info()).encode("utf-8")
            return self.info_bytes


class ExploreHandler(BaseHTTPRequestHandler):
    server: ExploreServer
    server_version = "hrbench-explore"
    protocol_version = "HTTP/1.1"  # keep-alive: a slider move costs one request on an open connection
    # Headers and body leave in two writes; with Nagle's algorithm the body waits for the client's delayed ACK
    # (40 ms on Linux) on a kept-alive connection (seen here: a 32x32 render took 55 ms over HTTP, 15 ms without).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the URL only
        pass

    # -- answers ----------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            # the page needs nothing from anywhere: inline script and style, data: images
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; img-src data:; connect-src 'self'",
            )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message, "status": status}, status)

    # -- methods ----------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        try:
            self._route()
        except RequestError as exc:
            self._error(exc.status, str(exc))
        except Busy as exc:
            self._error(HTTPStatus.TOO_MANY_REQUESTS, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        body = json.dumps(
            {"error": f"method {self.command} not allowed; this server only answers GET", "status": 405}
        ).encode("utf-8")
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    # -- routing ----------------------------------------------------------------------------------------------

    def _route(self) -> None:
        host, allowed = self.headers.get("Host"), self.server.allowed_hosts()
        if host is not None and allowed is not None and host.lower() not in allowed:
            raise RequestError(f"Host '{host}' is not this server; open {self.server.url}", 403)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        ex = self.server.explorer
        path = parts.path
        if path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/info":
            self._send(200, self.server.info(), "application/json; charset=utf-8")
        elif path == "/api/slice":
            self._json(ex.slice_images(ex.parse_slice(_one(query, "slice"))))
        elif path == "/api/render":
            self._render(ex, query)
        elif path == "/api/diverse":
            model, index = ex.parse_model(_one(query, "model")), ex.parse_slice(_one(query, "slice"))
            self._json(self.server.coalescer.run(None, 0, lambda: ex.diverse(model, index)))
        else:
            raise RequestError(
                f"no such path '{path}'; this server answers /, /api/info, /api/slice, "
                "/api/render and /api/diverse (it serves no files)",
                404,
            )

    def _render(self, ex: Explorer, query: dict[str, list[str]]) -> None:
        model = ex.parse_model(_one(query, "model"))
        index = ex.parse_slice(_one(query, "slice"))
        lam = ex.parse_lam(_one(query, "lam"))
        client, seq_text = _one(query, "client"), _one(query, "seq")
        seq = 0
        if client is not None:
            if len(client) > 64:
                raise RequestError("parameter 'client' is longer than 64 characters")
            try:
                seq = int(seq_text if seq_text is not None else "")
            except ValueError:
                raise RequestError(
                    f"seq '{seq_text}' is not an integer; with 'client', give 'seq' (increasing per request)"
                ) from None
            if not 0 <= seq < _SEQ_MAX:
                raise RequestError(f"seq {seq} is outside [0, 2^53)")
        result = self.server.coalescer.run(client, seq, lambda: ex.render(model, index, lam))
        if result is SUPERSEDED:
            self._json({"superseded": True, "seq": seq})
        else:
            self._json({**cast("dict[str, Any]", result), "seq": seq})  # not SUPERSEDED: the render's dict


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8765, **kwargs: Any) -> ExploreServer:
    """Bind (not yet serve). ``port=0`` picks a free port. A port in use or a host that cannot be bound is a
    ``RunError`` / ``ConfigError`` with one line."""
    from .page import live_page

    try:
        return ExploreServer((host, int(port)), explorer, live_page(), **kwargs)
    except socket.gaierror as exc:
        raise ConfigError(f"--host '{host}': not an address of this machine ({exc.strerror})") from exc
    except OSError as exc:
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise RunError(
                f"--port {port}: port {port} on {host} is in use; pick another port with --port "
                "(or --port 0 for any free one)"
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise RunError(
                f"--port {port}: not allowed to listen on port {port} (ports below 1024 need "
                "privileges); pick another with --port"
            ) from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host '{host}': not an address of this machine") from exc
        raise RunError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc


def serve(server: ExploreServer) -> None:
    """Serve until interrupted (Ctrl-C); the socket is closed on the way out."""
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()

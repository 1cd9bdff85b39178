"""The viewer's HTTP server (stdlib): the page, its static files and the JSON API.

GET and HEAD only; a request with a body, an overlong URL or a path outside the static folder is
refused before anything else runs. Binds to loopback unless the caller passes another host.
"""
from __future__ import annotations

import http.server
import ipaddress
import logging
import os
import posixpath
import threading
import urllib.parse

from sinr_jax.errors import SinrInputError
from sinr_jax.viewer.api import Api, Response, _json

_log = logging.getLogger("sinr_jax.viewer")
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
VENDOR_DIR = os.path.join(STATIC_DIR, "vendor")
# What `make viewer-assets` copies from the npm packages (sinr_jax/viewer/web/package-lock.json).
VENDOR_FILES = ("leaflet.js", "leaflet.css", "h3-js.umd.js")
MAX_URL_CHARS = 4096
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
                ".txt": "text/plain; charset=utf-8"}


def missing_assets() -> list[str]:
  return [f for f in VENDOR_FILES if not os.path.isfile(os.path.join(VENDOR_DIR, f))]


def check_assets() -> None:
  """The vendored browser libraries are built from npm (not committed): say how to get them."""
  missing = missing_assets()
  if missing:
    raise SinrInputError(
        f"the viewer's browser libraries are not built ({', '.join(missing)} missing): run "
        "`make viewer-assets` in a checkout of the repository (it runs `npm ci` in "
        "sinr_jax/viewer/web and copies Leaflet and h3-js into sinr_jax/viewer/static/vendor)",
        file=VENDOR_DIR)


def is_loopback(host: str) -> bool:
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def _static(path: str) -> Response:
  rel = "index.html" if path == "/" else path[len("/static/"):]
  rel = posixpath.normpath(urllib.parse.unquote(rel))
  full = os.path.realpath(os.path.join(STATIC_DIR, rel))
  if rel.startswith("..") or os.path.commonpath([STATIC_DIR, full]) != STATIC_DIR:
    return _json({"error": "path outside the viewer's static folder"}, 403)
  kind = STATIC_TYPES.get(os.path.splitext(full)[1].lower())
  if kind is None or not os.path.isfile(full):
    hint = " (run `make viewer-assets`)" if rel.startswith("vendor/") else ""
    return _json({"error": f"no static file {rel!r}{hint}"}, 404)
  with open(full, "rb") as f:
    return Response(200, kind, f.read())


def make_handler(api: Api) -> type[http.server.BaseHTTPRequestHandler]:
  class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "sinr_jax.viewer"
    protocol_version = "HTTP/1.1"

    def _respond(self, response: Response, head: bool = False) -> None:
      self.send_response(response.status)
      self.send_header("Content-Type", response.content_type)
      self.send_header("Content-Length", str(len(response.body)))
      self.send_header("X-Content-Type-Options", "nosniff")
      self.send_header("Cache-Control", "no-store")
      self.end_headers()
      if not head:
        self.wfile.write(response.body)

    def _answer(self, head: bool) -> None:
      if len(self.path) > MAX_URL_CHARS:
        return self._respond(_json({"error": f"URL longer than {MAX_URL_CHARS} characters"},
                                   414), head)
      if int(self.headers.get("Content-Length") or 0) > 0:
        self.close_connection = True  # the body is not read
        return self._respond(_json({"error": "requests must not have a body"}, 413), head)
      url = urllib.parse.urlsplit(self.path)
      try:
        if url.path.startswith("/api/"):
          response = api.handle(url.path, url.query)
        elif url.path == "/" or url.path.startswith("/static/"):
          response = _static(url.path)
        else:
          response = _json({"error": f"no such page {url.path[:200]!r}"}, 404)
      except Exception as e:  # noqa: BLE001 (a bug: answer it, log it, keep serving)
        _log.exception("%s failed", url.path)
        response = _json({"error": f"internal error: {e.__class__.__name__}: {e}"}, 500)
      self._respond(response, head)

    def do_GET(self):  # noqa: N802 (http.server's naming)
      self._answer(head=False)

    def do_HEAD(self):  # noqa: N802
      self._answer(head=True)

    def _refuse(self):
      self.close_connection = True
      self._respond(_json({"error": f"method {self.command} not allowed; the viewer is "
                                    "read-only (GET)"}, 405))

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, fmt, *args):
      _log.debug("%s %s", self.address_string(), fmt % args)

  return Handler


class ViewerServer(http.server.ThreadingHTTPServer):
  daemon_threads = True


def make_server(api: Api, host: str = "127.0.0.1", port: int = 0) -> ViewerServer:
  """A bound server (port 0: any free one; `server.server_address` says which)."""
  if not is_loopback(host):
    _log.warning("serving on %s: the viewer is reachable from other machines", host)
  try:
    return ViewerServer((host, port), make_handler(api))
  except OSError as e:
    raise SinrInputError(f"cannot listen on {host}:{port} ({e.strerror or e})",
                         field="port") from None


def serve_in_thread(server: ViewerServer) -> threading.Thread:
  """Runs `server` in a daemon thread (tests, notebooks); `server.shutdown()` stops it."""
  thread = threading.Thread(target=server.serve_forever, name="sinr_jax.viewer", daemon=True)
  thread.start()
  return thread

"""The example frontend: serves the notes page and forwards /api/* to the backend.

    GET  /           static/index.html (and other files under static/)
    *    /api/...    proxied to BACKEND_URL (e.g. http://backend:8080), status and body as is;
                     502 {"error": ...} when the backend cannot be reached
    GET  /healthz    200 "ok" (the frontend itself; the backend has its own probe)

Configured by environment: BACKEND_URL (required), PORT to listen on (8080).
"""

import mimetypes
import os
import pathlib
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATIC = pathlib.Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024
FORWARDED_HEADERS = ("Content-Type", "Accept")


class Handler(BaseHTTPRequestHandler):
    server_version = "notes-frontend"
    protocol_version = "HTTP/1.1"
    backend = ""  # set in main()

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True  # the body stays unread
            return self._send(413, b'{"error": "the body is too large"}', "application/json")
        body = self.rfile.read(length) if length else None
        headers = {h: self.headers[h] for h in FORWARDED_HEADERS if self.headers.get(h)}
        # Only the path and query go to the backend, whatever form the request target had.
        parts = urllib.parse.urlsplit(self.path)
        target = self.backend + parts.path + (f"?{parts.query}" if parts.query else "")
        request = urllib.request.Request(target, data=body, headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, data, ctype = response.status, response.read(), response.headers.get("Content-Type")
        except urllib.error.HTTPError as err:  # 4xx/5xx from the backend: pass it on
            status, data, ctype = err.code, err.read(), err.headers.get("Content-Type")
        except (urllib.error.URLError, OSError) as err:
            self.log_error("backend %s: %s", self.backend, err)
            return self._send(502, b'{"error": "the backend is unavailable"}', "application/json")
        self._send(status, data, ctype or "application/octet-stream")

    def _static(self):
        path = urllib.parse.urlsplit(self.path).path
        name = "index.html" if path == "/" else path.lstrip("/")
        file = (STATIC / name).resolve()
        if STATIC not in file.parents or not file.is_file():
            return self._send(404, b"not found\n", "text/plain; charset=utf-8")
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        self._send(200, file.read_bytes(), ctype)

    def _route(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/api" or path.startswith("/api/"):
            return self._proxy()
        if self.command not in ("GET", "HEAD"):
            return self._send(405, b"method not allowed\n", "text/plain; charset=utf-8")
        if path == "/healthz":
            return self._send(200, b"ok\n", "text/plain; charset=utf-8")
        return self._static()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _route


def main():
    backend = os.environ.get("BACKEND_URL", "").rstrip("/")
    if not backend.startswith(("http://", "https://")):
        sys.exit("notes-frontend: set BACKEND_URL to the backend's address, e.g. http://backend:8080")
    Handler.backend = backend
    port = int(os.environ.get("PORT") or 8080)
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"notes-frontend listening on :{port}, backend {backend}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""The example backend: a JSON API that keeps notes in PostgreSQL.

    GET  /healthz          200 {"status": "ok", ...} when the database answers, else 503
    GET  /api/notes        the latest notes, newest first (?limit=N, at most 100)
    POST /api/notes        {"text": "..."} -> 201 and the stored note
    GET  /api/notes/<id>   one note, or 404

Configured by environment: DATABASE_URL (postgresql://user:password@host:port/name?sslmode=...)
or DATABASE_HOST, DATABASE_PORT (5432), DATABASE_NAME, DATABASE_USER, DATABASE_PASSWORD and
DATABASE_SSLMODE (prefer; see pgwire.py); PORT to listen on (8080); APP_VERSION and
APP_ENVIRONMENT are reported by /healthz. The table is created on the first connection.
`python3 app.py --self-test` checks the image (config parsing, SCRAM against RFC 7677) offline.
"""

import json
import os
import queue
import re
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pgwire

MAX_BODY = 64 * 1024
MAX_TEXT = 1000
SCHEMA = """CREATE TABLE IF NOT EXISTS notes (
    id bigserial PRIMARY KEY,
    text text NOT NULL CHECK (char_length(text) BETWEEN 1 AND 1000),
    created_at timestamptz NOT NULL DEFAULT now()
)"""
NOTE_COLUMNS = "id, text, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at"


def database_settings(env):
    """Connection keywords from DATABASE_URL or the DATABASE_* variables; raises ValueError."""
    url = env.get("DATABASE_URL", "").strip()
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ValueError("DATABASE_URL must look like postgresql://user:password@host:5432/name")
        query = urllib.parse.parse_qs(parts.query)
        settings = {
            "host": parts.hostname,
            "port": parts.port or 5432,
            "user": urllib.parse.unquote(parts.username or ""),
            "password": urllib.parse.unquote(parts.password) if parts.password is not None else None,
            "database": urllib.parse.unquote(parts.path.lstrip("/")),
            "sslmode": query.get("sslmode", [env.get("DATABASE_SSLMODE", "prefer")])[0],
        }
    else:
        missing = [n for n in ("DATABASE_HOST", "DATABASE_NAME", "DATABASE_USER") if not env.get(n)]
        if missing:
            raise ValueError(f"set DATABASE_URL, or {', '.join(missing)} (with DATABASE_PASSWORD)")
        settings = {
            "host": env["DATABASE_HOST"],
            "port": int(env.get("DATABASE_PORT") or 5432),
            "user": env["DATABASE_USER"],
            "password": env.get("DATABASE_PASSWORD"),
            "database": env["DATABASE_NAME"],
            "sslmode": env.get("DATABASE_SSLMODE") or "prefer",
        }
    if not settings["user"] or not settings["database"]:
        raise ValueError("the database user and name must not be empty")
    if settings["sslmode"] not in pgwire.SSLMODES:
        raise ValueError(f"DATABASE_SSLMODE must be one of {', '.join(pgwire.SSLMODES)}")
    settings["sslrootcert"] = env.get("DATABASE_SSLROOTCERT") or None
    return settings


class Database:
    """A small pool: idle connections are reused, a broken one is dropped."""

    def __init__(self, settings, size=4):
        self.settings = settings
        self.idle = queue.LifoQueue(maxsize=size)
        self.schema_ready = False
        self.lock = threading.Lock()

    def query(self, sql, params=()):
        try:
            conn = self.idle.get_nowait()
        except queue.Empty:
            conn = pgwire.connect(timeout=5.0, **self.settings)
        try:
            self._ensure_schema(conn)
            rows = conn.query(sql, params)
        except pgwire.DatabaseError:
            self._give_back(conn)  # the statement failed; the connection is fine
            raise
        except BaseException:
            conn.close()
            raise
        self._give_back(conn)
        return rows

    def _give_back(self, conn):
        try:
            self.idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _ensure_schema(self, conn):
        if self.schema_ready:
            return
        with self.lock:
            if not self.schema_ready:
                try:
                    conn.query(SCHEMA)
                except pgwire.DatabaseError as err:
                    # Two replicas creating the table at once: the loser sees a duplicate.
                    if err.code not in ("23505", "42P07"):
                        raise
                self.schema_ready = True


class Handler(BaseHTTPRequestHandler):
    server_version = "notes-backend"
    protocol_version = "HTTP/1.1"
    db = None  # set in main()
    info = {}

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method):
        path = urllib.parse.urlsplit(self.path)
        try:
            if path.path == "/healthz" and method == "GET":
                self.db.query("SELECT 1 AS ok")
                return self._json(200, {"status": "ok", "database": "ok", **self.info})
            if path.path == "/api/notes":
                if method == "GET":
                    return self._list(urllib.parse.parse_qs(path.query))
                if method == "POST":
                    return self._create()
                return self._json(405, {"error": "use GET or POST"})
            match = re.fullmatch(r"/api/notes/([0-9]{1,18})", path.path)
            if match and method == "GET":
                rows = self.db.query(f"SELECT {NOTE_COLUMNS} FROM notes WHERE id = $1", [int(match[1])])
                return self._json(200, rows[0]) if rows else self._json(404, {"error": "no such note"})
            return self._json(404, {"error": "not found"})
        except (pgwire.Error, OSError) as err:
            self.log_error("database: %s", err)
            if path.path == "/healthz":
                return self._json(503, {"status": "unavailable", "database": str(err), **self.info})
            return self._json(503, {"error": "the database is unavailable"})

    def _list(self, query):
        try:
            limit = min(max(int(query.get("limit", ["50"])[0]), 1), 100)
        except ValueError:
            return self._json(400, {"error": "limit must be a number"})
        rows = self.db.query(f"SELECT {NOTE_COLUMNS} FROM notes ORDER BY id DESC LIMIT $1", [limit])
        return self._json(200, rows)

    def _create(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True  # the body stays unread
            return self._json(413, {"error": f"the body is larger than {MAX_BODY} bytes"})
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._json(400, {"error": "the body is not JSON"})
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            return self._json(400, {"error": f'expected {{"text": "..."}} with 1 to {MAX_TEXT} characters'})
        rows = self.db.query(f"INSERT INTO notes (text) VALUES ($1) RETURNING {NOTE_COLUMNS}", [text.strip()])
        return self._json(201, rows[0])

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")


def self_test():
    """Offline checks that the image works: config parsing and SCRAM (RFC 7677 section 3)."""
    settings = database_settings({"DATABASE_URL": "postgresql://u%40x:p%2Fw@db.internal:6543/notes?sslmode=require"})
    assert (settings["user"], settings["password"], settings["port"], settings["sslmode"]) == ("u@x", "p/w", 6543, "require")
    final, signature = pgwire.scram_client_final(
        "pencil",
        "n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    )
    assert final == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", final
    assert pgwire.base64.b64encode(signature) == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    print("self-test ok")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    try:
        settings = database_settings(os.environ)
    except ValueError as err:
        sys.exit(f"notes-backend: {err}")
    Handler.db = Database(settings)
    Handler.info = {"version": os.environ.get("APP_VERSION", "dev"), "environment": os.environ.get("APP_ENVIRONMENT", "local")}
    port = int(os.environ.get("PORT") or 8080)
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    # Kubernetes stops a pod with SIGTERM: stop accepting, let the process end.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"notes-backend listening on :{port}, database {settings['host']}:{settings['port']}/{settings['database']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

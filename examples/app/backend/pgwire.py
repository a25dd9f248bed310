"""A minimal PostgreSQL client on Python's standard library (protocol 3.0).

Enough for the example backend and nothing more: TCP (+ TLS via SSLRequest), password
authentication (SCRAM-SHA-256, MD5, cleartext), and one statement at a time through the
extended query protocol with text parameters ($1, $2, ...), so values are never spliced into
SQL. It keeps the image to `python:3.11-slim` plus this app's files, with nothing to download
at build time. A real service would use psycopg; the API here is deliberately small:

    conn = connect(host=..., port=5432, user=..., password=..., database=..., sslmode="prefer")
    rows = conn.query("SELECT id, text FROM notes WHERE id = $1", [42])   # list of dicts
    conn.close()

sslmode: disable | prefer (TLS when the server offers it, certificate not verified) |
require (TLS or fail, not verified, like libpq) | verify-full (TLS, certificate and host name
verified against the system CAs or DATABASE_SSLROOTCERT).
"""

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
SSLMODES = ("disable", "prefer", "require", "verify-full")

# Type OIDs converted from text; every other type stays a string.
_INT_TYPES = {20, 21, 23, 26}  # int8, int2, int4, oid
_FLOAT_TYPES = {700, 701}  # float4, float8
_BOOL = 16


class Error(Exception):
    """Connection, protocol or authentication failure."""


class DatabaseError(Error):
    """An ErrorResponse from the server; `code` is the SQLSTATE (e.g. 23505)."""

    def __init__(self, fields):
        self.fields = fields
        self.code = fields.get("C", "")
        super().__init__(f"{fields.get('S', 'ERROR')}: {fields.get('M', 'unknown error')} (SQLSTATE {self.code})")


def scram_client_final(password, client_first_bare, server_first, gs2_header="n,,"):
    """RFC 5802/7677: the client-final message and the server signature to expect."""
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
    client_nonce = dict(item.split("=", 1) for item in client_first_bare.split(","))["r"]
    if not nonce.startswith(client_nonce):
        raise Error("SCRAM: the server's nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    binding = base64.b64encode(gs2_header.encode()).decode()
    without_proof = f"c={binding},r={nonce}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    server_signature = hmac.digest(server_key, auth_message, "sha256")
    return f"{without_proof},p={base64.b64encode(proof).decode()}", server_signature


def _cstr(value):
    return value.encode() + b"\0"


class Connection:
    def __init__(self, host, port, user, password, database, sslmode="prefer", sslrootcert=None, timeout=10.0):
        if sslmode not in SSLMODES:
            raise Error(f"sslmode must be one of {', '.join(SSLMODES)}, not {sslmode!r}")
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        try:
            if sslmode != "disable":
                self._start_tls(host, sslmode, sslrootcert)
            self._file = self._sock.makefile("rb")
            params = _cstr("user") + _cstr(user) + _cstr("database") + _cstr(database)
            params += _cstr("application_name") + _cstr("notes-backend") + b"\0"
            body = struct.pack("!i", PROTOCOL_3_0) + params
            self._sock.sendall(struct.pack("!i", len(body) + 4) + body)
            self._authenticate(user, password)
            self._until_ready()
        except BaseException:
            self._sock.close()
            raise

    # -- transport
    def _start_tls(self, host, sslmode, sslrootcert):
        self._sock.sendall(struct.pack("!ii", 8, SSL_REQUEST))
        answer = self._sock.recv(1)
        if answer == b"S":
            if sslmode == "verify-full":
                context = ssl.create_default_context(cafile=sslrootcert)
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._sock = context.wrap_socket(self._sock, server_hostname=host)
        elif answer == b"N":
            if sslmode in ("require", "verify-full"):
                raise Error(f"the server does not offer TLS (sslmode={sslmode})")
        else:
            raise Error(f"unexpected answer {answer!r} to SSLRequest")

    def _send(self, kind, payload=b""):
        self._sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    def _recv(self):
        header = self._file.read(5)
        if len(header) < 5:
            raise Error("the server closed the connection")
        kind, length = header[:1], struct.unpack("!i", header[1:])[0]
        payload = self._file.read(length - 4)
        if len(payload) < length - 4:
            raise Error("the server closed the connection")
        if kind == b"E":
            raise DatabaseError(self._fields(payload))
        return kind, payload

    @staticmethod
    def _fields(payload):
        out = {}
        for part in payload.split(b"\0"):
            if part:
                out[chr(part[0])] = part[1:].decode(errors="replace")
        return out

    # -- start-up
    def _authenticate(self, user, password):
        while True:
            kind, payload = self._recv()
            if kind != b"R":
                raise Error(f"unexpected message {kind!r} during authentication")
            code = struct.unpack("!i", payload[:4])[0]
            if code == 0:
                return
            if password is None:
                raise Error("the server asks for a password and none is configured")
            if code == 3:
                self._send(b"p", _cstr(password))
            elif code == 5:
                inner = hashlib.md5((password + user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + payload[4:8]).hexdigest()
                self._send(b"p", _cstr("md5" + outer))
            elif code == 10:
                mechanisms = [m.decode() for m in payload[4:].split(b"\0") if m]
                if "SCRAM-SHA-256" not in mechanisms:
                    raise Error(f"no supported SASL mechanism in {mechanisms}")
                self._scram(password)
            else:
                raise Error(f"unsupported authentication method {code}")

    def _scram(self, password):
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"  # PostgreSQL takes the user from the start-up message
        first = ("n,," + first_bare).encode()
        self._send(b"p", _cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first)
        kind, payload = self._recv()
        if kind != b"R" or struct.unpack("!i", payload[:4])[0] != 11:
            raise Error("SCRAM: expected SASLContinue")
        final, server_signature = scram_client_final(password, first_bare, payload[4:].decode())
        self._send(b"p", final.encode())
        kind, payload = self._recv()
        if kind != b"R" or struct.unpack("!i", payload[:4])[0] != 12:
            raise Error("SCRAM: expected SASLFinal")
        verifier = dict(item.split("=", 1) for item in payload[4:].decode().split(","))
        if base64.b64decode(verifier.get("v", "")) != server_signature:
            raise Error("SCRAM: the server's signature is wrong")

    def _until_ready(self):
        error = None
        while True:
            try:
                kind, _ = self._recv()
            except DatabaseError as err:
                error = error or err
                continue
            if kind == b"Z":
                if error:
                    raise error
                return

    # -- queries
    def query(self, sql, params=()):
        """Runs one statement; returns its rows as dicts (empty for statements without rows)."""
        values = b""
        for value in params:
            if value is None:
                values += struct.pack("!i", -1)
            else:
                data = str(value).encode()
                values += struct.pack("!i", len(data)) + data
        self._send(b"P", b"\0" + _cstr(sql) + struct.pack("!h", 0))
        self._send(b"B", b"\0\0" + struct.pack("!h", 0) + struct.pack("!h", len(params)) + values + struct.pack("!h", 0))
        self._send(b"D", b"P\0")
        self._send(b"E", b"\0" + struct.pack("!i", 0))
        self._send(b"S")
        columns, rows, error = [], [], None
        while True:
            try:
                kind, payload = self._recv()
            except DatabaseError as err:
                error = error or err  # the server skips to Sync; read up to ReadyForQuery
                continue
            if kind == b"T":
                columns = self._columns(payload)
            elif kind == b"D":
                rows.append(self._row(columns, payload))
            elif kind == b"Z":
                if error:
                    raise error
                return rows

    @staticmethod
    def _columns(payload):
        count, at, columns = struct.unpack("!h", payload[:2])[0], 2, []
        for _ in range(count):
            end = payload.index(b"\0", at)
            name = payload[at:end].decode()
            type_oid = struct.unpack("!i", payload[end + 7 : end + 11])[0]
            columns.append((name, type_oid))
            at = end + 19
        return columns

    @staticmethod
    def _row(columns, payload):
        count, at, row = struct.unpack("!h", payload[:2])[0], 2, {}
        for index in range(count):
            length = struct.unpack("!i", payload[at : at + 4])[0]
            at += 4
            name, type_oid = columns[index]
            if length < 0:
                row[name] = None
                continue
            text = payload[at : at + length].decode()
            at += length
            if type_oid in _INT_TYPES:
                row[name] = int(text)
            elif type_oid in _FLOAT_TYPES:
                row[name] = float(text)
            elif type_oid == _BOOL:
                row[name] = text == "t"
            else:
                row[name] = text
        return row

    def close(self):
        try:
            self._send(b"X")
        except OSError:
            pass
        self._sock.close()


def connect(**kwargs):
    return Connection(**kwargs)

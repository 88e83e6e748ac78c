#!/usr/bin/env python3
"""A small ClickHouse-compatible HTTP server on top of chdb-core (in-process ClickHouse).

For development and tests only: production uses a real ClickHouse server.
It speaks the subset of ClickHouse's HTTP interface that the Rust `clickhouse`
crate (and curl) use; see README.md next to this file.

Engine calls go through a small pool of chdb connections to one engine (one
data directory), so queries from different clients run at the same time, as
on a real server; each request holds one connection from its first engine
call to its last. Request bodies are read (and decompressed, checksums
verified) completely before a connection is taken, so a slow or open upload
never holds one.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import lz4.block
import lz4.frame
from clickhouse_cityhash.cityhash import CityHash128

try:  # optional: zstd-compressed native blocks (method 0x90)
    import zstandard  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None

# ---------------------------------------------------------------------------
# ClickHouse error codes and HTTP statuses
# ---------------------------------------------------------------------------

ERR_CANNOT_READ_ALL_DATA = 33
ERR_CHECKSUM_DOESNT_MATCH = 40
ERR_UNKNOWN_COMPRESSION_METHOD = 89
ERR_CANNOT_DECOMPRESS = 271
ERR_SYNTAX_ERROR = 62
ERR_UNKNOWN_QUERY_PARAMETER = 456
ERR_HTTP_LENGTH_REQUIRED = 381
ERR_UNSUPPORTED_METHOD = 1
ERR_STD_EXCEPTION = 1001
ERR_UNKNOWN_SETTING = 115
ERR_BAD_ARGUMENTS = 36

_NAME_BY_CODE = {
    ERR_CANNOT_READ_ALL_DATA: "CANNOT_READ_ALL_DATA",
    ERR_CHECKSUM_DOESNT_MATCH: "CHECKSUM_DOESNT_MATCH",
    ERR_UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    ERR_CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    ERR_SYNTAX_ERROR: "SYNTAX_ERROR",
    ERR_HTTP_LENGTH_REQUIRED: "HTTP_LENGTH_REQUIRED",
    ERR_UNSUPPORTED_METHOD: "UNSUPPORTED_METHOD",
    ERR_STD_EXCEPTION: "STD_EXCEPTION",
    ERR_UNKNOWN_SETTING: "UNKNOWN_SETTING",
    ERR_BAD_ARGUMENTS: "BAD_ARGUMENTS",
}

# Same grouping as ClickHouse's exceptionCodeToHTTPStatus, keyed by error name
# (chdb messages end with "(ERROR_NAME)").
_STATUS_BY_NAME = {}
for _name in (
    "BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE "
    "CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER "
    "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6 "
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN "
    "UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST TOO_BIG_AST "
    "UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH "
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"
).split():
    _STATUS_BY_NAME[_name] = 400
for _name in (
    "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
    "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING UNKNOWN_AGGREGATE_FUNCTION "
    "UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE"
).split():
    _STATUS_BY_NAME[_name] = 404
_STATUS_BY_NAME.update(
    {
        "REQUIRED_PASSWORD": 401,
        "UNKNOWN_USER": 403,
        "WRONG_PASSWORD": 403,
        "AUTHENTICATION_FAILED": 403,
        "ACCESS_DENIED": 403,
        "QUERY_IS_TOO_LARGE": 413,
        "NOT_IMPLEMENTED": 501,
        "SOCKET_TIMEOUT": 503,
        "CANNOT_OPEN_FILE": 503,
        "HTTP_LENGTH_REQUIRED": 411,
        "TIMEOUT_EXCEEDED": 408,
        "CANNOT_SCHEDULE_TASK": 503,
        "UNSUPPORTED_MEDIA_TYPE": 415,
    }
)

_CODE_RE = re.compile(r"Code: (\d+)\. ")
_NAME_RE = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")


class CHError(Exception):
    """An error reported to the client the way ClickHouse reports it."""

    def __init__(self, code: int, message: str, name: str | None = None):
        super().__init__(message)
        self.code = code
        self.name = name or _NAME_BY_CODE.get(code)
        self.message = message

    @classmethod
    def from_engine(cls, exc: BaseException) -> "CHError":
        text = str(exc)
        m = _CODE_RE.search(text)
        if not m:
            return cls(ERR_STD_EXCEPTION, text.strip() or type(exc).__name__)
        text = text[m.start():].strip()
        code = int(m.group(1))
        name = _NAME_RE.search(text)
        # Keep the engine's text as is ("Code: N. DB::Exception: ... (NAME)").
        err = cls(code, text, name.group(1) if name else None)
        err.preformatted = True
        return err

    preformatted = False

    def body(self, version: str) -> bytes:
        if self.preformatted:
            text = self.message
        else:
            text = f"Code: {self.code}. DB::Exception: {self.message}"
            if self.name:
                text += f" ({self.name})"
        return f"{text} (version {version} (official build))\n".encode()

    def status(self) -> int:
        return _STATUS_BY_NAME.get(self.name or "", 500)


# ---------------------------------------------------------------------------
# ClickHouse native compression framing
# ---------------------------------------------------------------------------

METHOD_NONE = 0x02
METHOD_LZ4 = 0x82
METHOD_ZSTD = 0x90
_HEADER = struct.Struct("<BII")  # method, compressed size (incl. 9-byte header), raw size
_MASK64 = (1 << 64) - 1


def _checksum(block: bytes | memoryview) -> bytes:
    h = CityHash128(block)
    return struct.pack("<QQ", h >> 64, h & _MASK64)


def decode_native_blocks(data: bytes) -> list[bytes]:
    """Split, verify and decompress a body of ClickHouse compressed blocks."""
    out = []
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 25:
            raise CHError(
                ERR_CANNOT_READ_ALL_DATA,
                f"Cannot read all data. Bytes read: {end - pos}. Bytes expected: 25.",
            )
        method, csize, rsize = _HEADER.unpack_from(view, pos + 16)
        if csize < 9:
            raise CHError(ERR_CANNOT_DECOMPRESS, f"Too small size of compressed block: {csize}")
        if pos + 16 + csize > end:
            raise CHError(
                ERR_CANNOT_READ_ALL_DATA,
                f"Cannot read all data. Bytes read: {end - pos - 16}. Bytes expected: {csize}.",
            )
        block = view[pos + 16 : pos + 16 + csize]
        expected = bytes(view[pos : pos + 16])
        actual = _checksum(block)
        if actual != expected:
            raise CHError(
                ERR_CHECKSUM_DOESNT_MATCH,
                "Checksum doesn't match: corrupted data. Reference: "
                f"{_fmt_checksum(expected)}. Actual: {_fmt_checksum(actual)}. "
                f"Size of compressed block: {csize}",
            )
        payload = block[9:]
        if method == METHOD_LZ4:
            try:
                out.append(lz4.block.decompress(payload, uncompressed_size=rsize))
            except Exception as exc:  # lz4 raises LZ4BlockError
                raise CHError(ERR_CANNOT_DECOMPRESS, f"Cannot decompress LZ4-encoded data: {exc}")
        elif method == METHOD_NONE:
            out.append(bytes(payload))
        elif method == METHOD_ZSTD and zstandard is not None:
            try:
                out.append(zstandard.ZstdDecompressor().decompress(payload, max_output_size=rsize))
            except Exception as exc:
                raise CHError(ERR_CANNOT_DECOMPRESS, f"Cannot decompress ZSTD-encoded data: {exc}")
        else:
            raise CHError(
                ERR_UNKNOWN_COMPRESSION_METHOD,
                f"Unknown compression method. Code: {method}",
            )
        pos += 16 + csize
    return out


def _fmt_checksum(raw: bytes) -> str:
    lo, hi = struct.unpack("<QQ", raw)
    return f"0x{lo:016x}{hi:016x}"


def encode_native_blocks(data: bytes, block_size: int = 1 << 20) -> bytes:
    """Compress `data` into ClickHouse LZ4 compressed blocks (as `compress=1` answers)."""
    parts = []
    view = memoryview(data)
    for start in range(0, len(data), block_size) or [0]:
        raw = view[start : start + block_size]
        payload = lz4.block.compress(raw, store_size=False)
        block = _HEADER.pack(METHOD_LZ4, 9 + len(payload), len(raw)) + payload
        parts.append(_checksum(block))
        parts.append(block)
    return b"".join(parts) if data else b""


# ---------------------------------------------------------------------------
# Request parsing helpers
# ---------------------------------------------------------------------------

# URL parameters that are not settings (ClickHouse's HTTP handler consumes them).
_NOT_SETTINGS = {
    "query",
    "database",
    "default_format",
    "compress",
    "decompress",
    "user",
    "password",
    "quota_key",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "buffer_size",
    "wait_end_of_query",
    "role",
    "stacktrace",
    "enable_http_compression",
    "http_zlib_compression_level",
    "http_native_compression_disable_checksumming_on_decompress",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "client_protocol_version",
    "default_role",
}

_INSERT_FORMAT_RE = re.compile(
    rb"\A\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+([A-Za-z0-9_]+)", re.IGNORECASE | re.DOTALL
)
_TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*\Z", re.IGNORECASE)
_FIRST_WORD_RE = re.compile(r"\A\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)
_SETTING_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
_DB_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.-]*\Z")


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise CHError(ERR_BAD_ARGUMENTS, "multipart/form-data without boundary")
    delim = b"--" + m.group(1).encode()
    fields = {}
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        part = part[2:] if part.startswith(b"\r\n") else part
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if value.endswith(b"\r\n"):
            value = value[:-2]
        nm = re.search(rb'name="([^"]*)"', head)
        if nm:
            fields[nm.group(1).decode()] = value
    return fields


def decode_content_encoding(encoding: str, body: bytes) -> bytes:
    enc = encoding.strip().lower()
    if not enc or enc == "identity":
        return body
    try:
        if enc in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if enc == "deflate":
            return zlib.decompress(body)
        if enc == "lz4":
            return lz4.frame.decompress(body)
        if enc == "zstd" and zstandard is not None:
            return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    except Exception as exc:
        raise CHError(ERR_CANNOT_DECOMPRESS, f"Cannot decompress request body ({enc}): {exc}")
    raise CHError(ERR_UNKNOWN_COMPRESSION_METHOD, f"Unknown HTTP content encoding: {encoding}")


# ---------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------


class Engine:
    """A pool of chdb connections to one engine; a call holds one connection.

    Every connection is a session of its own (current database, settings), so
    a request's `USE`/`SET` never reaches another request running at the same
    time; both are reset before the connection goes back to the pool.
    """

    def __init__(self, data_dir: str, connections: int = 4):
        # Imported here (slow import) so signal handlers are in place first.
        # chdb's Python wrappers add pandas/arrow post-processing depending on
        # the format name; the extension module is used directly to get raw
        # bytes back for every format. chdb-core is pinned in requirements.txt.
        from chdb import _chdb

        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._all = [_chdb.connect(data_dir) for _ in range(connections)]
        # LIFO: under light load the same (warm) connection serves requests.
        self._free: queue.LifoQueue = queue.LifoQueue()
        for conn in self._all:
            self._free.put(conn)
        conn = self._all[0]
        self.version = conn.query("SELECT version()", "TabSeparated").bytes().decode().strip()
        self.timezone = conn.query("SELECT timezone()", "TabSeparated").bytes().decode().strip()

    @property
    def connections(self) -> int:
        return len(self._all)

    def close(self):
        # Waits for every connection to come back, so no call is cut short.
        taken = [self._free.get() for _ in self._all]
        for conn in taken:
            conn.close()

    def run(self, req: "Prepared"):
        """Apply per-request database/settings, run, reset. Returns (result, stats)."""
        conn = self._free.get()
        try:
            return self._run_on(conn, req)
        finally:
            self._free.put(conn)

    def _run_on(self, conn, req: "Prepared"):
        raw = lambda sql, fmt="TabSeparated", params=None: conn.query(sql, fmt, params=params or {})  # noqa: E731
        applied = []
        try:
            if req.database:
                self._engine_call(raw, f"USE `{req.database}`")
            for name, value in req.settings:
                self._engine_call(raw, f"SET {name} = {_sql_literal(value)}")
                applied.append(name)
            if req.insert is not None:
                return self._insert(conn, req)
            res = self._engine_call(raw, req.sql, req.fmt, req.params)
            return res, {
                "read_rows": res.storage_rows_read(),
                "read_bytes": res.storage_bytes_read(),
                "written_rows": res.rows_written(),
                "written_bytes": res.bytes_written(),
                "result_rows": res.rows_read(),
                "result_bytes": res.bytes_read(),
                "elapsed": res.elapsed(),
            }
        finally:
            for name in applied:
                try:
                    raw(f"SET {name} = DEFAULT")
                except Exception:
                    pass
            # A request must not leave a current database behind (HTTP
            # queries without a session are independent on a real server).
            if req.database or req.may_change_db:
                try:
                    raw("USE default")
                except Exception:
                    pass

    def _insert(self, conn, req: "Prepared"):
        head, fmt, chunks = req.insert
        started = time.perf_counter()
        inserter = self._engine_call(conn.send_insert, head, fmt)
        try:
            for chunk in chunks:
                if chunk:
                    conn.insert_append(inserter, chunk)
            res = conn.insert_done(inserter)
        except Exception as exc:
            try:
                conn.insert_cancel(inserter)
            except Exception:
                pass
            raise CHError.from_engine(exc)
        return None, {
            "read_rows": res.rows_written(),
            "read_bytes": res.bytes_written(),
            "written_rows": res.rows_written(),
            "written_bytes": res.bytes_written(),
            "result_rows": res.rows_written(),
            "result_bytes": res.bytes_written(),
            "elapsed": time.perf_counter() - started,
        }

    @staticmethod
    def _engine_call(fn, *args):
        try:
            return fn(*args)
        except CHError:
            raise
        except Exception as exc:
            raise CHError.from_engine(exc)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Prepared:
    """A request turned into what the engine runs."""

    __slots__ = ("sql", "fmt", "params", "settings", "database", "insert", "may_change_db")

    def __init__(self):
        self.sql = ""
        self.fmt = "TabSeparated"
        self.params: dict[str, str] = {}
        self.settings: list[tuple[str, str]] = []
        self.database: str | None = None
        # (INSERT head without FORMAT, format name, list of data chunks) or None
        self.insert = None
        self.may_change_db = False


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY: avoids 40 ms delayed-ACK stalls
    server_version = "ClickHouse"

    def version_string(self):
        return self.server_version
    engine: Engine  # set on the class by serve()
    quiet = True

    def log_message(self, fmt, *args):  # noqa: D401 - BaseHTTPRequestHandler API
        if not self.quiet:
            super().log_message(fmt, *args)

    # -- entry points ------------------------------------------------------

    def do_GET(self):
        self._handle(read_body=True)  # a GET body (rare) continues the query, as with POST

    def do_POST(self):
        self._handle(read_body=True)

    def do_HEAD(self):
        self.close_connection = True
        self._send(200, b"", extra={}, head_only=True)

    def do_PUT(self):
        self.close_connection = True  # the body is not read
        self._send_error(CHError(ERR_UNSUPPORTED_METHOD, "Unsupported HTTP method PUT"), 405)

    do_DELETE = do_PUT
    do_PATCH = do_PUT

    # -- core --------------------------------------------------------------

    def _handle(self, read_body: bool):
        self._query_id = None
        try:
            url = urlsplit(self.path)
            path = url.path
            qs = parse_qsl(url.query, keep_blank_values=True)
            t_start = time.perf_counter()
            body = self._read_body() if read_body else b""
            if path in ("/ping", "/replicas_status") or (path == "/" and not qs and not body):
                self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            if path != "/":
                raise CHError(
                    ERR_BAD_ARGUMENTS,
                    f"There is no handle {path}. Use / or /ping.",
                    "UNKNOWN_TYPE_OF_QUERY",
                )
            args = {}
            for k, v in qs:
                args[k] = v
            self._query_id = args.get("query_id") or str(uuid.uuid4())
            t_read = time.perf_counter()
            req = self._prepare(args, body)
            t0 = time.perf_counter()
            result, stats = self.engine.run(req)
            payload = result.bytes() if result is not None else b""
            t1 = time.perf_counter()
            self._reply(args, req, payload, stats, t1 - t0)
            if not self.quiet:
                self.log_message(
                    "%s: body %d B read %.1f ms, prepare %.1f ms, engine %.1f ms, reply %.1f ms",
                    (req.insert[0] if req.insert else req.sql)[:60].replace("\n", " "),
                    len(body),
                    (t_read - t_start) * 1e3,
                    (t0 - t_read) * 1e3,
                    (t1 - t0) * 1e3,
                    (time.perf_counter() - t1) * 1e3,
                )
        except CHError as err:
            self._send_error(err)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception as exc:  # pragma: no cover - last resort
            self._send_error(CHError(ERR_STD_EXCEPTION, f"{type(exc).__name__}: {exc}"))

    def _read_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            parts = []
            rfile = self.rfile
            while True:
                line = rfile.readline(65537)
                if not line:
                    self.close_connection = True
                    raise CHError(ERR_CANNOT_READ_ALL_DATA, "Unexpected end of chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until an empty line
                    while True:
                        t = rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                chunk = rfile.read(size)
                if len(chunk) != size:
                    self.close_connection = True
                    raise CHError(ERR_CANNOT_READ_ALL_DATA, "Unexpected end of chunked body")
                parts.append(chunk)
                rfile.readline(3)  # CRLF after the chunk
            body = b"".join(parts)
        else:
            length = self.headers.get("Content-Length")
            if length is None:
                body = b""
            else:
                n = int(length)
                body = self.rfile.read(n) if n else b""
                if len(body) != n:
                    self.close_connection = True
                    raise CHError(ERR_CANNOT_READ_ALL_DATA, "Unexpected end of request body")
        enc = self.headers.get("Content-Encoding")
        if enc:
            body = decode_content_encoding(enc, body)
        return body

    def _prepare(self, args: dict[str, str], body: bytes) -> Prepared:
        req = Prepared()
        query = args.get("query", "")
        ctype = self.headers.get("Content-Type", "")
        if ctype.lower().startswith("multipart/form-data"):
            fields = parse_multipart(ctype, body)
            body = b""
            for name, value in fields.items():
                if name == "query":
                    query = (query + " " + value.decode()) if query else value.decode()
                elif name.startswith("param_"):
                    req.params[name[6:]] = value.decode()
        if args.get("decompress") in ("1", "true") and body:
            chunks = decode_native_blocks(body)
        else:
            chunks = [body] if body else []

        for k, v in args.items():
            if k.startswith("param_"):
                req.params.setdefault(k[6:], v)
            elif k not in _NOT_SETTINGS:
                if not _SETTING_NAME_RE.match(k):
                    raise CHError(ERR_UNKNOWN_SETTING, f"Unknown setting '{k}'")
                req.settings.append((k, v))
        db = args.get("database")
        if db:
            if not _DB_NAME_RE.match(db):
                raise CHError(ERR_BAD_ARGUMENTS, f"Bad database name '{db}'")
            req.database = db
        req.fmt = args.get("default_format") or "TabSeparated"

        # INSERT ... FORMAT X: the data is the body (or what follows FORMAT X).
        qbytes = query.encode()
        if query:
            m = _INSERT_FORMAT_RE.match(qbytes)
            if m and not qbytes[m.end():].strip():
                req.insert = (m.group(1).decode(), m.group(2).decode(), chunks)
                return req
        if not query:
            # the whole statement is in the body, possibly followed by data
            head = b"".join(chunks[:1])[:65536] if chunks else b""
            m = _INSERT_FORMAT_RE.match(head)
            if m and len(chunks) == 1:
                data = chunks[0][m.end():]
                data = _strip_one_line_break(data)
                req.insert = (m.group(1).decode(), m.group(2).decode(), [data])
                return req
            sql = b"".join(chunks).decode()
        else:
            m = _INSERT_FORMAT_RE.match(qbytes)
            if m:
                # query param holds "INSERT ... FORMAT X <data start>", body the rest
                data = _strip_one_line_break(qbytes[m.end():]) + (b"\n" if chunks else b"")
                req.insert = (m.group(1).decode(), m.group(2).decode(), [data] + chunks)
                return req
            sql = query + ("\n" + b"".join(chunks).decode() if chunks else "")
        if not sql.strip():
            raise CHError(ERR_SYNTAX_ERROR, "Empty query.")
        req.sql = sql
        first = _FIRST_WORD_RE.match(sql)
        req.may_change_db = bool(first and first.group(1).upper() == "USE")
        fm = _TRAILING_FORMAT_RE.search(sql[-200:])
        if fm:
            req.fmt = fm.group(1)
        return req

    def _reply(self, args, req: Prepared, payload: bytes, stats: dict, elapsed: float):
        summary = {
            "read_rows": str(stats["read_rows"]),
            "read_bytes": str(stats["read_bytes"]),
            "written_rows": str(stats["written_rows"]),
            "written_bytes": str(stats["written_bytes"]),
            "total_rows_to_read": str(stats["read_rows"]),
            "result_rows": str(stats["result_rows"]),
            "result_bytes": str(stats["result_bytes"]),
            "elapsed_ns": str(int(elapsed * 1e9)),
        }
        headers = {
            "Content-Type": _content_type(req.fmt) if req.insert is None else "text/plain; charset=UTF-8",
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
        }
        if req.insert is None:
            headers["X-ClickHouse-Format"] = req.fmt
        if args.get("compress") in ("1", "true"):
            payload = encode_native_blocks(payload)
            headers["Content-Type"] = "application/octet-stream"
        elif payload and args.get("enable_http_compression") in ("1", "true"):
            payload, enc = _http_compress(
                payload, self.headers.get("Accept-Encoding", ""), args.get("http_zlib_compression_level")
            )
            if enc:
                headers["Content-Encoding"] = enc
        self._send(200, payload, headers)

    def _send_error(self, err: CHError, status: int | None = None):
        body = err.body(self.engine.version)
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(err.code),
        }
        self._send(status or err.status(), body, headers)

    def _send(self, status: int, body, extra: dict, head_only: bool = False):
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-ClickHouse-Server-Display-Name", "chdb-dev")
            self.send_header("X-ClickHouse-Timezone", self.engine.timezone)
            if self._query_id:
                self.send_header("X-ClickHouse-Query-Id", self._query_id)
            if self.close_connection:
                self.send_header("Connection", "close")
            else:
                self.send_header("Connection", "Keep-Alive")
                self.send_header("Keep-Alive", "timeout=30")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            if body and not head_only:
                self.wfile.write(body)
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    _query_id = None


def _strip_one_line_break(data: bytes) -> bytes:
    i = 0
    while i < len(data) and data[i : i + 1] in (b" ", b"\t"):
        i += 1
    if data[i : i + 2] == b"\r\n":
        return data[i + 2 :]
    if data[i : i + 1] == b"\n":
        return data[i + 1 :]
    return data[i:]


def _content_type(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f.startswith(("tabseparated", "tsv", "csv", "pretty", "values", "vertical", "markdown")):
        return "text/plain; charset=UTF-8"
    if f.startswith(("tab", "text")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def _http_compress(payload: bytes, accept: str, level: str | None):
    encodings = [e.split(";")[0].strip().lower() for e in accept.split(",")]
    lvl = int(level) if level and level.isdigit() else 3
    for enc in encodings:
        if enc == "lz4":
            return lz4.frame.compress(payload), "lz4"
        if enc == "gzip":
            return _gzip(payload, lvl), "gzip"
        if enc == "deflate":
            return zlib.compress(payload, lvl), "deflate"
        if enc == "zstd" and zstandard is not None:
            return zstandard.ZstdCompressor(level=lvl).compress(payload), "zstd"
    return payload, None


def _gzip(payload: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(payload) + c.flush()


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve(argv=None) -> int:
    ap = argparse.ArgumentParser(description="ClickHouse HTTP interface on chdb-core (dev/test only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    ap.add_argument("--data-dir", help="engine data directory (default: a fresh temp dir, removed on exit)")
    ap.add_argument("--port-file", help="write the port here once the server accepts connections")
    ap.add_argument("--pid-file", help="write this process's pid here once the server accepts connections")
    ap.add_argument(
        "--connections",
        type=int,
        default=4,
        help="engine connections, i.e. queries that run at the same time (default 4)",
    )
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    opts = ap.parse_args(argv)

    # Installed first, so a stop during start-up still cleans up.
    stopping = threading.Event()
    httpd = None

    def _stop(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            if httpd is not None:
                threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    tmp = None
    data_dir = opts.data_dir
    if not data_dir:
        tmp = tempfile.mkdtemp(prefix="chdb-server-")
        data_dir = tmp
    os.makedirs(data_dir, exist_ok=True)

    try:
        engine = Engine(data_dir, opts.connections)
    except Exception as exc:
        print(f"cannot open chdb data dir {data_dir}: {exc}", file=sys.stderr)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        return 1
    Handler.engine = engine
    Handler.quiet = not opts.verbose

    httpd = Server((opts.host, opts.port), Handler)
    port = httpd.server_address[1]

    for path, value in ((opts.pid_file, os.getpid()), (opts.port_file, port)):
        if path:  # written atomically: readers never see a partial file
            with open(path + ".tmp", "w") as f:
                f.write(f"{value}\n")
            os.replace(path + ".tmp", path)
    print(
        f"chdb {engine.version} listening on http://{opts.host}:{port} "
        f"(data: {data_dir}, {engine.connections} connections)",
        flush=True,
    )

    try:
        if not stopping.is_set():
            httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        try:
            engine.close()
        except Exception:
            pass
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        for path in (opts.port_file, opts.pid_file):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(serve())

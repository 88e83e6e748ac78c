"""Tests for the chdb-backed ClickHouse HTTP server.

Run: dev/.venv/bin/python -m pytest -q dev/clickhouse-server/test_server.py
(dev/clickhouse-server/start.sh creates dev/.venv.)
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import zlib

import lz4.block
import lz4.frame
import pytest
from clickhouse_cityhash.cityhash import CityHash128

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chserver")
    port_file = tmp / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "server.py"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--data-dir",
            str(tmp / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None:
            raise RuntimeError("server died: " + proc.stdout.read().decode())
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    port = int(port_file.read_text())
    yield ("127.0.0.1", port)
    proc.terminate()
    assert proc.wait(timeout=20) == 0
    assert not port_file.exists()


def request(server, method="POST", path="/", body=b"", params=None, headers=None, conn=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(*server, timeout=30)
    if params:
        path = path + "?" + urllib.parse.urlencode(params)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    return resp, data


def q(server, sql, **params):
    resp, data = request(server, body=sql.encode(), params=params)
    assert resp.status == 200, data
    return data


def native_blocks(data: bytes, method: int = 0x82, corrupt: bool = False, block=64 * 1024) -> bytes:
    out = []
    for i in range(0, len(data), block):
        raw = data[i : i + block]
        payload = lz4.block.compress(raw, store_size=False) if method == 0x82 else raw
        blk = struct.pack("<BII", method, 9 + len(payload), len(raw)) + payload
        h = CityHash128(blk)
        checksum = struct.pack("<QQ", h >> 64, h & (2**64 - 1))
        if corrupt:
            checksum = bytes([checksum[0] ^ 1]) + checksum[1:]
        out.append(checksum + blk)
    return b"".join(out)


def chunked(data: bytes, size=10_000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


# --- basics -------------------------------------------------------------------


def test_ping_and_root(server):
    for method, path in (("GET", "/ping"), ("GET", "/"), ("POST", "/ping")):
        resp, data = request(server, method, path)
        assert resp.status == 200
        assert data == b"Ok.\n"
        assert resp.getheader("Content-Length") == "4"


def test_plain_query_post_body(server):
    resp, data = request(server, body=b"SELECT 1 AS a, 'x' AS b")
    assert resp.status == 200
    assert data == b"1\tx\n"
    assert resp.getheader("X-ClickHouse-Exception-Code") is None
    assert resp.getheader("X-ClickHouse-Format") == "TabSeparated"
    assert resp.getheader("Content-Length") == str(len(data))
    assert '"read_rows"' in resp.getheader("X-ClickHouse-Summary")


def test_get_query(server):
    resp, data = request(server, "GET", "/", params={"query": "SELECT 40 + 2"})
    assert resp.status == 200 and data == b"42\n"


def test_query_param_plus_body(server):
    # URL query, then "\n", then the body.
    resp, data = request(server, body=b"+ 1", params={"query": "SELECT 41"})
    assert resp.status == 200 and data == b"42\n"


def test_format_clause_and_default_format(server):
    resp, data = request(server, body=b"SELECT 1 AS a FORMAT JSONEachRow")
    assert data == b'{"a":1}\n'
    assert resp.getheader("X-ClickHouse-Format") == "JSONEachRow"
    resp, data = request(server, body=b"SELECT 7 AS a", params={"default_format": "RowBinaryWithNamesAndTypes"})
    assert data == b"\x01\x01a\x05UInt8\x07"
    assert resp.getheader("X-ClickHouse-Format") == "RowBinaryWithNamesAndTypes"


def test_settings_are_per_request(server):
    assert q(server, "SELECT getSetting('max_threads')", max_threads="3") == b"3\n"
    assert q(server, "SELECT getSetting('max_threads')") != b"3\n"


def test_unknown_setting_is_an_error(server):
    resp, data = request(server, body=b"SELECT 1", params={"no_such_setting_xyz": "1"})
    assert resp.status == 404
    assert resp.getheader("X-ClickHouse-Exception-Code") == "115"


def test_database_param(server):
    q(server, "CREATE DATABASE IF NOT EXISTS dbp")
    q(server, "CREATE TABLE IF NOT EXISTS dbp.t (a UInt8) ENGINE = Memory")
    assert q(server, "SELECT currentDatabase()", database="dbp") == b"dbp\n"
    assert q(server, "EXISTS TABLE t", database="dbp") == b"1\n"
    # not sticky
    assert q(server, "SELECT currentDatabase()") == b"default\n"
    # USE in a request does not leak into the next one
    q(server, "USE dbp")
    assert q(server, "SELECT currentDatabase()") == b"default\n"


def test_url_query_parameters(server):
    assert q(server, "SELECT {x:UInt32} + 1", param_x="41") == b"42\n"


def test_multipart_query_parameters(server):
    boundary = "clickhouse-rs-boundary-abc123"
    fields = [
        ("query", "SELECT {s:String}, {n:UInt64} * 2, {arr:Array(UInt8)}"),
        ("param_s", "it\\'s a\\ttab"),
        ("param_n", "21"),
        ("param_arr", "[1,2,3]"),
    ]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields
    ) + f"--{boundary}--\r\n".encode()
    resp, data = request(
        server, body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert resp.status == 200, data
    # TabSeparated output escapes the quote and the tab again
    assert data == b"it\\'s a\\ttab\t42\t[1,2,3]\n"


# --- errors ---------------------------------------------------------------------


def test_error_unknown_table(server):
    resp, data = request(server, body=b"SELECT * FROM no_such_table")
    assert resp.status == 404
    assert resp.getheader("X-ClickHouse-Exception-Code") == "60"
    assert data.startswith(b"Code: 60. DB::Exception: ")
    assert b"(UNKNOWN_TABLE)" in data
    assert data.endswith(b"(official build))\n")
    assert resp.getheader("Content-Length") == str(len(data))


def test_error_syntax(server):
    resp, data = request(server, body=b"SELEC 1")
    assert resp.status == 400
    assert resp.getheader("X-ClickHouse-Exception-Code") == "62"
    assert data.startswith(b"Code: 62. DB::Exception: Syntax error")


def test_error_generic_500(server):
    resp, data = request(server, body=b"SELECT throwIf(1, 'boom')")
    assert resp.status == 500
    assert resp.getheader("X-ClickHouse-Exception-Code") == "395"
    assert b"boom" in data


def test_error_unknown_path(server):
    resp, data = request(server, "GET", "/nope")
    assert resp.status == 404
    assert resp.getheader("X-ClickHouse-Exception-Code")


def test_connection_survives_errors(server):
    conn = http.client.HTTPConnection(*server, timeout=30)
    for _ in range(3):
        resp, _ = request(server, body=b"SELECT * FROM nope", conn=conn)
        assert resp.status == 404
        resp, data = request(server, body=b"SELECT 1", conn=conn)
        assert resp.status == 200 and data == b"1\n"
    conn.close()


# --- inserts --------------------------------------------------------------------


@pytest.fixture(scope="module")
def table(server):
    q(server, "CREATE TABLE ins (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
    return "ins"


def rowbinary(rows):
    out = bytearray()
    for i, s in rows:
        b = s.encode()
        out += struct.pack("<Q", i) + bytes([len(b)]) + b
    return bytes(out)


def test_insert_format_in_body(server, table):
    q(server, "INSERT INTO ins FORMAT CSV\n1,one\n2,two\n")
    q(server, "INSERT INTO ins VALUES (3, 'three')")
    assert q(server, "SELECT s FROM ins WHERE id IN (1, 2, 3) ORDER BY id") == b"one\ntwo\nthree\n"


def test_insert_query_param_body_data(server, table):
    resp, data = request(
        server, body=b"4\tfour\n5\tfive\n", params={"query": "INSERT INTO ins FORMAT TabSeparated"}
    )
    assert resp.status == 200 and data == b""
    assert '"written_rows":"2"' in resp.getheader("X-ClickHouse-Summary")
    assert q(server, "SELECT count() FROM ins WHERE id IN (4, 5)") == b"2\n"


def test_native_compressed_chunked_insert(server, table):
    rows = [(1000 + i, f"row {i}") for i in range(20_000)]
    data = rowbinary(rows)
    body = native_blocks(data)
    conn = http.client.HTTPConnection(*server, timeout=30)
    path = "/?" + urllib.parse.urlencode({"query": "INSERT INTO ins (id, s) FORMAT RowBinary", "decompress": "1"})
    conn.request("POST", path, body=chunked(body), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.read() == b"" and resp.status == 200
    assert q(server, "SELECT count(), sum(id) FROM ins WHERE id >= 1000 AND id < 21000") == (
        f"20000\t{sum(i for i, _ in rows)}\n".encode()
    )
    conn.close()


def test_native_uncompressed_method(server, table):
    data = rowbinary([(50_000, "plain")])
    resp, body = request(
        server,
        body=native_blocks(data, method=0x02),
        params={"query": "INSERT INTO ins FORMAT RowBinary", "decompress": "1"},
    )
    assert resp.status == 200, body
    assert q(server, "SELECT s FROM ins WHERE id = 50000") == b"plain\n"


def test_native_insert_bad_checksum(server, table):
    data = rowbinary([(60_000, "bad")])
    resp, body = request(
        server,
        body=native_blocks(data, corrupt=True),
        params={"query": "INSERT INTO ins FORMAT RowBinary", "decompress": "1"},
    )
    assert resp.status == 500
    assert resp.getheader("X-ClickHouse-Exception-Code") == "40"
    assert body.startswith(b"Code: 40. DB::Exception: Checksum doesn't match")
    assert q(server, "SELECT count() FROM ins WHERE id = 60000") == b"0\n"


def test_native_insert_truncated(server, table):
    body = native_blocks(rowbinary([(60_001, "cut")]))[:-3]
    resp, data = request(server, body=body, params={"query": "INSERT INTO ins FORMAT RowBinary", "decompress": "1"})
    assert resp.status == 500
    assert resp.getheader("X-ClickHouse-Exception-Code") == "33"


def test_insert_bad_data_is_rejected(server, table):
    resp, data = request(server, body=b"not-a-number,x\n", params={"query": "INSERT INTO ins FORMAT CSV"})
    assert resp.status in (400, 500)
    assert resp.getheader("X-ClickHouse-Exception-Code")
    assert data.startswith(b"Code: ")
    # the connection/engine is usable afterwards
    assert q(server, "SELECT 1") == b"1\n"


# --- response compression -------------------------------------------------------


def test_lz4_response_compression(server):
    resp, data = request(
        server,
        body=b"SELECT number FROM numbers(1000)",
        params={"enable_http_compression": "1"},
        headers={"Accept-Encoding": "lz4"},
    )
    assert resp.getheader("Content-Encoding") == "lz4"
    assert resp.getheader("Content-Length") == str(len(data))
    assert lz4.frame.decompress(data) == b"".join(b"%d\n" % i for i in range(1000))


def test_gzip_response_compression(server):
    resp, data = request(
        server,
        body=b"SELECT 1",
        params={"enable_http_compression": "1"},
        headers={"Accept-Encoding": "gzip"},
    )
    assert resp.getheader("Content-Encoding") == "gzip"
    assert zlib.decompress(data, 16 + zlib.MAX_WBITS) == b"1\n"


def test_no_compression_without_setting(server):
    # Like a real server: Accept-Encoding alone does not compress.
    resp, data = request(server, body=b"SELECT 1", headers={"Accept-Encoding": "lz4"})
    assert resp.getheader("Content-Encoding") is None and data == b"1\n"


def test_compress_param_native_blocks(server):
    resp, data = request(server, body=b"SELECT number FROM numbers(100000)", params={"compress": "1"})
    assert resp.status == 200
    out, pos = [], 0
    while pos < len(data):
        method, csize, rsize = struct.unpack_from("<BII", data, pos + 16)
        blk = data[pos + 16 : pos + 16 + csize]
        h = CityHash128(blk)
        assert data[pos : pos + 16] == struct.pack("<QQ", h >> 64, h & (2**64 - 1))
        assert method == 0x82
        out.append(lz4.block.decompress(blk[9:], uncompressed_size=rsize))
        pos += 16 + csize
    assert b"".join(out) == b"".join(b"%d\n" % i for i in range(100000))


def test_gzip_request_body(server):
    resp, data = request(server, body=zlib.compress(b"SELECT 5"), headers={"Content-Encoding": "deflate"})
    assert resp.status == 200 and data == b"5\n"


# --- connections and concurrency --------------------------------------------------


def test_keep_alive_reuses_socket(server):
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.connect()
    sock = conn.sock
    for i in range(20):
        resp, data = request(server, body=f"SELECT {i}".encode(), conn=conn)
        assert data == f"{i}\n".encode()
        assert resp.getheader("Content-Length") == str(len(data))
        assert not resp.will_close
    assert conn.sock is sock
    conn.close()


def test_small_query_latency_has_no_nagle_stall(server):
    # Headers and body are separate writes: without TCP_NODELAY each answer waits
    # for the client's delayed ACK (~40 ms).
    conn = http.client.HTTPConnection(*server, timeout=30)
    request(server, body=b"SELECT 1", conn=conn)
    t = time.perf_counter()
    for _ in range(20):
        request(server, body=b"SELECT 1", conn=conn)
    per = (time.perf_counter() - t) / 20
    conn.close()
    assert per < 0.035, f"{per * 1000:.1f} ms per query"


def test_open_upload_does_not_block_others(server, table):
    """A client that has sent half an insert must not block other queries."""
    s = socket.create_connection(server)
    path = "/?" + urllib.parse.urlencode({"query": "INSERT INTO ins FORMAT CSV"})
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"8\r\n70000,a\n\r\n"
    )
    time.sleep(0.2)
    t = time.perf_counter()
    assert q(server, "SELECT 1") == b"1\n"
    assert time.perf_counter() - t < 5
    s.sendall(b"0\r\n\r\n")
    s.settimeout(30)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
    assert q(server, "SELECT count() FROM ins WHERE id = 70000") == b"1\n"


def test_concurrent_inserts_and_selects(server):
    q(server, "CREATE TABLE conc (t UInt32, i UInt32) ENGINE = MergeTree ORDER BY (t, i)")
    errors = []
    n_threads, n_iter, n_rows = 6, 15, 500

    def worker(t):
        try:
            conn = http.client.HTTPConnection(*server, timeout=60)
            for k in range(n_iter):
                data = b"".join(struct.pack("<II", t, k * n_rows + i) for i in range(n_rows))
                resp, body = request(
                    server,
                    body=native_blocks(data),
                    params={"query": "INSERT INTO conc FORMAT RowBinary", "decompress": "1"},
                    conn=conn,
                )
                assert resp.status == 200, body
                resp, body = request(server, body=f"SELECT count() FROM conc WHERE t = {t}".encode(), conn=conn)
                assert resp.status == 200, body
                assert int(body) == (k + 1) * n_rows
                resp, body = request(server, body=b"SELECT * FROM nope", conn=conn)
                assert resp.status == 404
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
        assert not th.is_alive(), "deadlock"
    assert not errors, errors
    assert q(server, "SELECT count() FROM conc") == f"{n_threads * n_iter * n_rows}\n".encode()


def test_queries_run_at_the_same_time_each_in_its_own_session(server):
    """A slow query holds one engine connection; others run meanwhile, and
    neither sees the other's database or settings."""
    q(server, "CREATE DATABASE IF NOT EXISTS dbc")
    slow = {}

    def run_slow():
        slow["out"] = q(
            server,
            "SELECT currentDatabase(), getSetting('max_threads'), sleep(2)",
            database="dbc",
            max_threads="3",
        )

    th = threading.Thread(target=run_slow)
    th.start()
    time.sleep(0.3)
    for _ in range(5):
        assert q(server, "SELECT currentDatabase(), getSetting('max_threads') = 3") == b"default\t0\n"
    assert th.is_alive(), "the other queries waited for the slow one"
    th.join(timeout=30)
    assert slow["out"] == b"dbc\t3\t0\n"
    # and every connection is back in its default state afterwards
    for _ in range(8):
        assert q(server, "SELECT currentDatabase(), getSetting('max_threads') = 3") == b"default\t0\n"


def test_single_connection_runs_queries_one_at_a_time(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--port-file", str(port_file),
         "--data-dir", str(tmp_path / "data"), "--connections", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None and time.time() < deadline, "server did not start"
            time.sleep(0.05)
        srv = ("127.0.0.1", int(port_file.read_text()))
        th = threading.Thread(target=lambda: q(srv, "SELECT sleep(1.5)"))
        th.start()
        time.sleep(0.3)
        assert q(srv, "SELECT 1") == b"1\n"
        assert not th.is_alive(), "with one connection a query waits for the one before it"
        th.join()
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_query_id_header(server):
    qid = str(uuid.uuid4())
    resp, _ = request(server, body=b"SELECT 1", params={"query_id": qid})
    assert resp.getheader("X-ClickHouse-Query-Id") == qid


def test_data_dir_persists(tmp_path):
    """Data written to --data-dir survives a restart; the server exits cleanly on SIGTERM."""
    data_dir = tmp_path / "data"
    for step in range(2):
        port_file = tmp_path / f"port{step}"
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--port-file", str(port_file),
             "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 60
            while not (port_file.exists() and port_file.read_text().strip()):
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.05)
            srv = ("127.0.0.1", int(port_file.read_text()))
            if step == 0:
                q(srv, "CREATE TABLE keep (a UInt8) ENGINE = MergeTree ORDER BY a")
                q(srv, "INSERT INTO keep VALUES (7)")
            else:
                assert q(srv, "SELECT a FROM keep") == b"7\n"
        finally:
            proc.terminate()
            assert proc.wait(timeout=20) == 0

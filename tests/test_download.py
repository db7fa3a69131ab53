"""The resumable downloader against a local HTTP server that misbehaves on purpose.

`FileServer` is also used by test_chars74k.py (imported from here: tests/ is on sys.path).
"""

import hashlib
import http.server
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from charjax.data.download import DownloadOptions, download
from charjax.errors import CharjaxError

FAST = DownloadOptions(connect_timeout=2.0, read_timeout=2.0, retries=3, chunk_size=1024)


class FileServer:
    """Serves `files` on 127.0.0.1 at an ephemeral port, with switchable faults.

    Attributes:
      files: URL path (without the leading "/") -> bytes.
      ranges: honour `Range: bytes=N-` (otherwise answer 200 with the whole file).
      drop_after: cut the connection after this many body bytes, once per entry (a list).
      fail_with: statuses to answer the next requests with, one per request.
      stall: seconds to wait after the headers of the next request, once.
      requests: (path, Range header or None) of every request, in order.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.drop_after: list[int] = []
        self.fail_with: list[int] = []
        self.stall = 0.0
        self.requests: list[tuple[str, str | None]] = []
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for one, and tests start many servers.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def url(self, name: str) -> str:
        return self.base + name

    def count(self, name: str) -> int:
        return sum(path == name for path, _ in self.requests)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path, header = self.path.lstrip("/"), self.headers.get("Range")
                server.requests.append((path, header))
                if server.fail_with:
                    self.send_error(server.fail_with.pop(0))
                    return
                if path not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[path], 0
                m = re.fullmatch(r"bytes=(\d+)-", header or "")
                if server.ranges and m:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.stall:
                    wait, server.stall = server.stall, 0.0
                    time.sleep(wait)
                if server.drop_after:
                    cut = server.drop_after.pop(0)
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # an abrupt end mid-body
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy in the environment must not intercept
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def payload() -> bytes:
    return bytes(range(256)) * 200  # 51,200 bytes: many chunks of FAST.chunk_size


def _download(server, dest: Path, sleeps: list | None = None, **kw):
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return download(
        server.url("f.tgz"),
        dest,
        options=kw.pop("options", FAST),
        progress=False,
        sleep=sleep,
        **kw,
    )


def test_full_download_checks_size_and_sha256(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    got = _download(server, tmp_path / "f.tgz")
    assert (tmp_path / "f.tgz").read_bytes() == payload
    assert got.sha256 == hashlib.sha256(payload).hexdigest() and got.size == len(payload)
    assert got.attempts == 1 and not got.resumed
    assert not (tmp_path / "f.tgz.part").exists()
    assert server.requests == [("f.tgz", None)]


def test_dropped_connection_resumes_from_the_part_file(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    server.drop_after = [20_000]
    sleeps = []
    got = _download(server, tmp_path / "f.tgz", sleeps)
    assert (tmp_path / "f.tgz").read_bytes() == payload
    assert got.resumed and got.attempts == 2
    # The retry asked only for the missing bytes.
    assert server.requests[1] == ("f.tgz", f"bytes={20_000}-")
    assert sleeps == [FAST.backoff]


def test_server_ignoring_range_restarts_cleanly(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    server.ranges = False
    server.drop_after = [20_000]
    got = _download(server, tmp_path / "f.tgz")
    # Range was asked for, the whole file came back and replaced the partial one.
    assert server.requests[1] == ("f.tgz", "bytes=20000-")
    assert (tmp_path / "f.tgz").read_bytes() == payload
    assert got.size == len(payload)


def test_part_file_already_complete_is_finished_without_a_body(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    (tmp_path / "f.tgz.part").write_bytes(payload)  # killed just before the rename
    got = _download(server, tmp_path / "f.tgz")
    assert (tmp_path / "f.tgz").read_bytes() == payload and got.resumed


def test_404_fails_at_once_with_the_hint(server, tmp_path):
    sleeps = []
    with pytest.raises(CharjaxError) as e:
        _download(server, tmp_path / "f.tgz", sleeps, hint="; use --from-dir DIR")
    message = str(e.value)
    assert "HTTP 404" in message and "--from-dir" in message and "\n" not in message
    assert len(server.requests) == 1 and sleeps == []
    assert not (tmp_path / "f.tgz").exists()


def test_5xx_is_retried_with_growing_backoff(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    server.fail_with = [500, 503]
    sleeps = []
    got = _download(server, tmp_path / "f.tgz", sleeps)
    assert got.attempts == 3 and (tmp_path / "f.tgz").read_bytes() == payload
    assert sleeps == [FAST.backoff, 2 * FAST.backoff]


def test_gives_up_after_the_retry_budget(server, tmp_path):
    server.files["f.tgz"] = b"x"
    server.fail_with = [502] * 10
    with pytest.raises(CharjaxError, match=r"giving up after 4 attempts \(HTTP 502"):
        _download(server, tmp_path / "f.tgz")
    assert len(server.requests) == 4


def test_a_stalled_read_times_out_and_is_retried(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    server.stall = 1.0
    options = DownloadOptions(connect_timeout=2.0, read_timeout=0.2, retries=2)
    got = _download(server, tmp_path / "f.tgz", options=options)
    assert got.attempts == 2 and (tmp_path / "f.tgz").read_bytes() == payload


def test_existing_file_is_not_fetched_again(server, payload, tmp_path):
    (tmp_path / "f.tgz").write_bytes(payload)
    got = _download(server, tmp_path / "f.tgz")
    assert got.attempts == 0 and server.requests == []


def test_sha256_mismatch_deletes_the_download(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    with pytest.raises(CharjaxError, match="does not match the expected 00000"):
        _download(server, tmp_path / "f.tgz", sha256="0" * 64)
    assert not (tmp_path / "f.tgz").exists() and not (tmp_path / "f.tgz.part").exists()


def test_expected_size_mismatch_is_refused(server, payload, tmp_path):
    server.files["f.tgz"] = payload
    with pytest.raises(CharjaxError, match=f"server has {len(payload)} bytes, expected 10"):
        _download(server, tmp_path / "f.tgz", expected_size=10)
    assert not (tmp_path / "f.tgz").exists()

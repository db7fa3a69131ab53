"""A robust, resumable HTTP download of one file: what dataset archives need and urllib lacks.

    download("https://host/data/EnglishHnd.tgz", Path("downloads/EnglishHnd.tgz"))

- Bytes stream into `NAME.part` beside the destination; the destination appears (by rename)
  only once the size and sha256 are checked, so an existing destination is always a whole,
  verified file.
- An interrupted download resumes from the `.part` with an HTTP Range request. A server that
  ignores Range (answers 200 with the whole file) or answers with another range is handled by
  starting again from byte 0, never by appending the wrong bytes.
- Connection errors, timeouts, bodies cut short, 5xx, 408 and 429 are retried with
  exponential backoff; the retry budget counts failures in a row, so a flaky line that makes
  progress each time still finishes. 401/403/404/410 fail at once with one clear line.
- The size is checked against what the server announced (and `expected_size` when known),
  and the sha256 of the finished file is returned, and compared when `sha256` is given.
- A progress bar (bytes, rate, ETA) goes to stderr.
"""

import hashlib
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from charjax.errors import CharjaxError

# Answers that will not change by asking again: say so at once.
_FATAL = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 410: "Gone"}
_RETRY_STATUS = {408, 429}  # plus every 5xx
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_RANGE_TOTAL = re.compile(r"bytes\s+\*/(\d+)")
# Errors that mean "the connection failed", as raised by requests and, for raw body reads,
# by urllib3 (ProtocolError for a body cut short, ReadTimeoutError for a stalled one).
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
)


@dataclass(frozen=True)
class DownloadOptions:
    """How hard to try; all defaults live here.

    Attributes:
      connect_timeout: seconds to wait for a connection.
      read_timeout: seconds without a byte before the connection counts as dead.
      retries: failures in a row (without progress) before giving up.
      backoff: seconds before the first retry; doubled after each failure in a row.
      max_backoff: cap on one wait (also caps a server's Retry-After).
      chunk_size: bytes per read.
    """

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    chunk_size: int = 1 << 16


@dataclass(frozen=True)
class Downloaded:
    """A finished download: where it is, its size and sha256, and how it got there."""

    path: Path
    size: int
    sha256: str
    resumed: bool  # some bytes came from an earlier, interrupted attempt
    attempts: int  # HTTP requests made (0 when the file was already complete)


class _Retry(Exception):
    """One attempt failed in a way worth retrying; carries the reason and a suggested wait."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


def _expected_total(response: requests.Response, offset: int) -> tuple[int, int | None]:
    """(byte offset the body starts at, total file size or None) for a 200 or 206 answer."""
    if response.status_code == 206:
        m = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not m:
            raise _Retry("partial answer without a usable Content-Range")
        start, total = int(m.group(1)), m.group(3)
        return start, (None if total == "*" else int(total))
    length = response.headers.get("Content-Length")
    return 0, (int(length) if length and length.isdigit() else None)


def _attempt(
    session: requests.Session,
    url: str,
    part: Path,
    options: DownloadOptions,
    bar: tqdm,
    hint: str,
) -> int | None:
    """One HTTP request appending to `part`; returns the total size announced (or None).

    Raises _Retry for failures worth retrying and CharjaxError for the others.
    """
    offset = part.stat().st_size if part.exists() else 0
    # identity: a server that marks .tgz as Content-Encoding: gzip must not have requests
    # unzip it for us (the sizes and Range offsets are those of the stored bytes).
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    timeout = (options.connect_timeout, options.read_timeout)
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        status = response.status_code
        if status in _FATAL:
            raise CharjaxError(f"{url}: HTTP {status} {_FATAL[status]}{hint}")
        if status == 416 and offset:
            # The .part is already as long as (or longer than) the file: done, or junk.
            m = _RANGE_TOTAL.fullmatch(response.headers.get("Content-Range", "").strip())
            if m and int(m.group(1)) == offset:
                return offset
            part.unlink()
            raise _Retry("the partial download does not fit the file on the server", 0.0)
        if status >= 500 or status in _RETRY_STATUS:
            raise _Retry(f"HTTP {status} {response.reason}", _retry_after(response))
        if status not in (200, 206):
            raise CharjaxError(f"{url}: unexpected HTTP {status} {response.reason}{hint}")
        start, total = _expected_total(response, offset)
        if start != offset:
            # 200 to a Range request: the server ignores Range and sends the whole file. Or
            # a 206 for other bytes than asked. Either way, start over from byte 0.
            if start != 0:
                part.unlink()
                raise _Retry(f"server sent bytes from {start}, asked for {offset}", 0.0)
            offset = 0
        # Resumed bytes count toward the position but not the rate.
        bar.reset(total=total)
        bar.n = bar.last_print_n = offset
        bar.refresh()
        try:
            with open(part, "r+b" if offset else "wb") as f:
                f.seek(offset)
                f.truncate()
                for block in response.raw.stream(options.chunk_size, decode_content=False):
                    f.write(block)
                    bar.update(len(block))
        except OSError as e:
            raise CharjaxError(f"cannot write {part}: {e.strerror or e}") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        part.unlink()
        raise _Retry(f"got {size} bytes, the server announced {total}", 0.0)
    return total


def _fetch(
    url: str, part: Path, options: DownloadOptions, progress: bool, hint: str, sleep
) -> tuple[int | None, int, bool]:
    """Appends to `part` until the server's whole file is there, retrying failures in a row.

    Returns:
      (total size the server announced or None, HTTP requests made, whether bytes of an
      earlier attempt were kept).
    """
    attempts, failures, reason = 0, 0, ""
    resumed = part.exists() and part.stat().st_size > 0
    bar = tqdm(
        desc=part.name.removesuffix(".part"),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        file=sys.stderr,
    )
    with bar, requests.Session() as session:
        while True:
            before = part.stat().st_size if part.exists() else 0
            attempts += 1
            try:
                return _attempt(session, url, part, options, bar, hint), attempts, resumed
            except _Retry as e:
                reason, wait = str(e), e.wait
            except _NETWORK_ERRORS as e:
                reason, wait = f"connection failed ({type(e).__name__})", None
            # Progress resets the budget: only failures in a row count.
            after = part.stat().st_size if part.exists() else 0
            failures = 1 if after > before else failures + 1
            if failures > options.retries:
                raise CharjaxError(
                    f"{url}: giving up after {attempts} attempts ({reason}); run again to "
                    f"resume from the {after} bytes kept in {part}{hint}"
                )
            if wait is None:
                wait = options.backoff * 2 ** (failures - 1)
            bar.set_postfix_str(f"retrying: {reason}", refresh=True)
            sleep(min(wait, options.max_backoff))
            resumed = resumed or after > 0


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    options: DownloadOptions = DownloadOptions(),
    progress: bool = True,
    hint: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> Downloaded:
    """Downloads `url` to `dest`, resuming a `.part` left by an earlier attempt.

    Args:
      url: an http(s) URL.
      dest: the file to create. If it exists it is taken as complete (this function only ever
        creates it whole) and only checked against `sha256`/`expected_size`.
      expected_size: the size in bytes, when known in advance.
      sha256: the expected hex digest, when known; a mismatch deletes the download.
      options: timeouts, retries and backoff.
      progress: show a progress bar on stderr.
      hint: appended to errors that retrying cannot fix (say what the user can do instead).
      sleep: how to wait between retries (tests pass a no-op).

    Returns:
      A Downloaded record. Raises CharjaxError with one clear line on failure; the `.part` is
      kept when resuming later makes sense.
    """
    dest = Path(dest)
    if dest.exists():
        try:
            size, digest = verify(dest, expected_size=expected_size, sha256=sha256)
        except CharjaxError as e:
            raise CharjaxError(f"{e}{hint}") from None
        return Downloaded(dest, size, digest, False, 0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The `.part` name is fixed, not unique per writer like charjax.atomic's temp files: it
    # is what a later run finds and resumes.
    part = dest.with_name(dest.name + ".part")
    total, attempts, resumed = _fetch(url, part, options, progress, hint, sleep)
    if expected_size is not None and total is not None and total != expected_size:
        part.unlink()
        raise CharjaxError(
            f"{url}: the server has {total} bytes, expected {expected_size}; the file "
            f"changed or the address is wrong{hint}"
        )
    try:
        size, digest = verify(part, expected_size=expected_size, sha256=sha256, name=dest.name)
    except CharjaxError as e:
        # A file we fetched ourselves is deleted, so the next run fetches it afresh.
        part.unlink()
        raise CharjaxError(f"{e}; deleted it, so the next run downloads it afresh{hint}") from None
    # Checked before it is renamed: a file at `dest` is always whole and verified.
    os.replace(part, dest)
    return Downloaded(dest, size, digest, resumed, attempts)


def verify(
    path: Path,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    hint: str = "",
    name: str | None = None,
) -> tuple[int, str]:
    """Checks a whole file's size and sha256 (when given); returns (size, hex sha256).

    `name` is what errors call the file (a download's `.part` is named for its destination).
    """
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        shown = path.with_name(name) if name else path
        raise CharjaxError(f"{shown} has {size} bytes, expected {expected_size}{hint}")
    digest = sha256_of(path)
    if sha256 is not None and digest != sha256.lower():
        raise CharjaxError(
            f"{name or path.name}: sha256 {digest} does not match the expected "
            f"{sha256.lower()}{hint}"
        )
    return size, digest

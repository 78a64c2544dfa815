"""Fetching the CIFAR-10 archive: http(s) with retries, file:// or a plain path, md5 checked."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import DataError

log = logging.getLogger(__name__)

#: md5 of the official python-version archive (cifar-10-python.tar.gz) from the CIFAR-10 site.
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"

_CHUNK = 1 << 20
_HINT = (
    "If this machine cannot download it, fetch the archive by other means and set `data.url` "
    "in your config (config/config.yaml or a file passed with --configfile) to its local path "
    "(or a file:// URL): it is then copied to {dest} once its md5 checks out."
)


def md5sum(path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class _Progress:
    """Byte counter that draws a bar on a TTY, or logs a plain line now and then."""

    def __init__(self, total: int | None, label: str, bar: bool, stream=None):
        self.total = total if total and total > 0 else None
        self.label = label
        self.bar = bar
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_log = self.start
        self._next_pct = 10

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = 100.0 * self.done / self.total
            return (
                f"{self.label}: {_fmt_bytes(self.done)} / {_fmt_bytes(self.total)} "
                f"({pct:5.1f}%) {_fmt_bytes(rate)}/s"
            )
        return f"{self.label}: {_fmt_bytes(self.done)} {_fmt_bytes(rate)}/s"

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.bar:
            if now - self._last_draw >= 0.1:
                self._draw()
                self._last_draw = now
            return
        pct = 100.0 * self.done / self.total if self.total else None
        if (pct is not None and pct >= self._next_pct) or now - self._last_log >= 15.0:
            log.info("%s", self._line())
            self._last_log = now
            if pct is not None:
                while self._next_pct <= pct:
                    self._next_pct += 10

    def _draw(self) -> None:
        width = 30
        if self.total:
            filled = int(width * min(self.done / self.total, 1.0))
            bar = "[" + "#" * filled + "." * (width - filled) + "] "
        else:
            bar = ""
        self.stream.write("\r" + bar + self._line() + "   ")
        self.stream.flush()

    def close(self) -> None:
        if self.bar:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


class _Transient(Exception):
    """A failure worth retrying (connection cut, timeout, HTTP 5xx)."""


class _CannotWrite(DataError):
    """The local ``.part`` file cannot be written (disk full, no permission): no retry, no hint."""


def _source_kind(source: str) -> tuple[str, str]:
    """Return ``("http", url)`` or ``("file", local_path)``."""
    parsed = urllib.parse.urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return "http", source
    if scheme == "file":
        return "file", urllib.request.url2pathname(parsed.path)
    if len(scheme) > 1:
        raise DataError(f"unsupported data source scheme {scheme!r} in {source!r}")
    return "file", source  # plain path (a one-letter "scheme" is a Windows drive)


def names_file(source: str, path) -> bool:
    """Whether ``source`` (a plain path or a ``file://`` URL) names the file at ``path``."""
    try:
        kind, where = _source_kind(source)
    except DataError:
        return False
    return kind == "file" and os.path.realpath(where) == os.path.realpath(path)


@contextlib.contextmanager
def _writing(part: Path):
    """An OSError here is the local disk's (full, read-only), not the network's: never retried."""
    try:
        yield
    except OSError as e:
        raise _CannotWrite(f"cannot write {part}: {e}") from e


def _copy_stream(src, part: Path, progress: _Progress, expected: int | None, hasher) -> int:
    """Copy ``src`` into a new file ``part``; errors reading ``src`` pass through unchanged."""
    got = 0
    with _writing(part):
        dst = open(part, "wb")
    try:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            with _writing(part):
                dst.write(chunk)
            hasher.update(chunk)
            got += len(chunk)
            progress.update(len(chunk))
    finally:
        with _writing(part):  # close writes what is buffered: a full disk may show only here
            dst.close()
    if expected is not None and got != expected:
        raise _Transient(f"transfer cut short: got {got} of {expected} bytes")
    return got


def _http_attempt(url: str, part: Path, timeout: float, bar: bool, hasher) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "scratchcnn-data/1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            progress = _Progress(expected, "download", bar)
            try:
                _copy_stream(resp, part, progress, expected, hasher)
            finally:
                progress.close()
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code} {e.reason}") from e
        raise DataError(f"HTTP {e.code} {e.reason} for {url}") from e
    except (urllib.error.URLError, ssl.SSLCertVerificationError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        if isinstance(reason, ssl.SSLCertVerificationError):  # the same on every attempt
            raise DataError(f"the TLS certificate of {url} could not be verified: {reason}") from e
        if isinstance(reason, socket.gaierror):
            raise DataError(f"cannot resolve host of {url}: {reason}") from e
        raise _Transient(f"cannot connect to {url}: {reason}") from e
    except (http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from e
    except OSError as e:
        raise _Transient(f"{type(e).__name__}: {e}") from e


def fetch_archive(
    source: str,
    dest,
    md5: str,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60,
    progress: bool | None = None,
) -> Path:
    """Make sure ``dest`` holds the archive from ``source`` with the given md5.

    ``source`` is an http(s) URL, a ``file://`` URL or a plain local path. If ``dest`` already
    exists with the right md5 nothing is fetched. Otherwise the data goes to ``dest.name +
    ".part"`` in dest's directory, is checked, and is renamed onto ``dest`` atomically; on any
    failure the ``.part`` file is removed.

    HTTP transfers are retried ``retries`` times (so ``retries + 1`` attempts) with exponential
    backoff ``backoff * 2**k`` seconds on transient errors: connection refused/reset/cut before
    Content-Length bytes arrived, timeouts, HTTP 5xx/408/429. Other HTTP 4xx errors and DNS
    failures fail at once. ``progress``: ``None`` draws a bar on stderr when it is a TTY and logs
    a line every 10% otherwise; ``True``/``False`` force the bar or the log lines. A TLS
    certificate that cannot be verified, or a ``.part`` file that cannot be written (disk full),
    fails at once too.

    Raises :class:`DataError` on every failure; the message names the source (or the ``.part``
    file that could not be written) and, where the data could not be obtained, explains how to
    place the archive by hand.
    """
    dest = Path(dest)
    md5 = md5.strip().lower()
    hint = _HINT.format(dest=dest)
    if dest.is_dir():
        raise DataError(f"the archive's place {dest} is a folder; remove it or set data.archive to a file name")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the folder of {dest}: {e}") from e
    if dest.exists():
        found = md5sum(dest)
        if found == md5:
            log.info("%s already present with md5 %s; nothing to fetch", dest, md5)
            return dest
        log.warning("%s exists but has md5 %s (expected %s); fetching again", dest, found, md5)

    bar = sys.stderr.isatty() if progress is None else bool(progress)
    kind, where = _source_kind(source)
    part = dest.with_name(dest.name + ".part")
    t0 = time.monotonic()
    hasher = hashlib.md5()
    try:
        if kind == "file":
            src = Path(where)
            if not src.is_file():
                raise DataError(f"data source {source!r} is not an existing file. {hint}")
            log.info("copying %s -> %s", src, dest)
            size = src.stat().st_size
            prog = _Progress(size, "copy", bar)
            try:
                with open(src, "rb") as fi:
                    _copy_stream(fi, part, prog, None, hasher)
            except OSError as e:
                raise DataError(f"cannot copy {src} to {part}: {e}") from e
            finally:
                prog.close()
        else:
            attempts = max(int(retries), 0) + 1
            for attempt in range(1, attempts + 1):
                log.info("downloading %s (attempt %d/%d)", where, attempt, attempts)
                hasher = hashlib.md5()
                try:
                    _http_attempt(where, part, timeout, bar, hasher)
                    break
                except _Transient as e:
                    if attempt == attempts:
                        raise DataError(
                            f"could not download {source} after {attempts} attempt(s): {e}. {hint}"
                        ) from e
                    wait = backoff * 2 ** (attempt - 1)
                    log.warning("attempt %d failed (%s); retrying in %.2f s", attempt, e, wait)
                    time.sleep(wait)
                except _CannotWrite:
                    raise  # a local problem: fetching by other means would not help
                except DataError as e:
                    raise DataError(f"{e}. {hint}") from e
        found = hasher.hexdigest()  # computed while writing .part
        if found != md5:
            raise DataError(
                f"md5 mismatch for {source}: expected {md5}, found {found}; "
                f"the file was not kept. Check `data.md5` or the source. {hint}"
            )
        os.replace(part, dest)
    finally:
        if part.exists():
            part.unlink()
    log.info(
        "fetched %s (%s, md5 %s) in %.1f s",
        dest,
        _fmt_bytes(dest.stat().st_size),
        md5,
        time.monotonic() - t0,
    )
    return dest

"""One small resumable downloader for weight files, and the checks every fetched file passes.

``download_url`` writes ``NAME.part``, resumes it with an HTTP ``Range`` request after a dropped connection
or a stall, shows a tqdm bar, checks size and hash, and only then renames it to ``NAME`` (atomic), so a
corrupt file never sits under the final name. A full disk removes the ``.part`` and says "no space".
Torch-free: the CLI's ``zoo weights`` commands and the hub share it.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from zoo.errors import DownloadError

CHUNK = 1 << 20


def offline() -> bool:
    """``ZOO_OFFLINE`` or ``HF_HUB_OFFLINE``: no network call at all."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def _timeout() -> float:
    return float(os.environ.get("ZOO_DOWNLOAD_TIMEOUT", "30"))


def _retries() -> int:
    return int(os.environ.get("ZOO_DOWNLOAD_RETRIES", "5"))


def digests(path, kinds=("sha256",)) -> dict[str, str]:
    """Hex digests of ``path`` (``sha256``, ``md5``) in one pass."""
    hashers = {k: hashlib.new(k) for k in set(kinds) | {"sha256"}}
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            for h in hashers.values():
                h.update(block)
    return {k: h.hexdigest() for k, h in hashers.items()}


def hash_matches(found: dict[str, str], expected: str | None, kind: str) -> bool:
    if not expected:
        return True
    if kind == "sha256-prefix":
        return found["sha256"].startswith(expected.lower())
    return found[kind] == expected.lower()


def check_file(path: Path, expected: str | None, kind: str = "sha256", size: int | None = None,
               source: str = "") -> str:
    """Raise ``DownloadError`` unless ``path`` has ``size`` bytes and the expected hash; return its sha256."""
    actual_size = path.stat().st_size
    where = f" from {source}" if source else ""
    if size is not None and actual_size != size:
        raise DownloadError(f"{path.name}{where} has {actual_size} bytes, expected {size}")
    found = digests(path, ("md5",) if kind == "md5" else ())
    if not hash_matches(found, expected, kind):
        got = found["md5" if kind == "md5" else "sha256"]
        raise DownloadError(f"{path.name}{where} does not match its published hash ({kind} {expected}, got {got})")
    return found["sha256"]


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_sidecar(path: Path, sha256: str, source: str = "") -> None:
    """Record the verified sha256 and size beside ``path``: later loads compare against it."""
    st = path.stat()
    record = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "source": source}
    tmp = sidecar_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, sidecar_path(path))


def read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None


def finalize(part: Path, dest: Path, expected: str | None, kind: str, size: int | None, source: str) -> str:
    """Check ``part`` and rename it to ``dest``; a mismatch deletes ``part`` so nothing corrupt stays behind."""
    try:
        sha256 = check_file(part, expected, kind, size, source)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    write_sidecar(dest, sha256, source)
    return sha256


def _progress(total, initial, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=None if enabled else True, file=sys.stderr, leave=False, dynamic_ncols=True)


def _no_space(part: Path, exc: OSError) -> DownloadError:
    part.unlink(missing_ok=True)
    return DownloadError(f"no space left on the device while writing {part} ({exc.strerror}); the partial "
                         f"file was removed: free some space or use --cache-dir / ZOO_CACHE elsewhere")


def _fetch_into(url: str, part: Path, progress: bool, desc: str) -> bool:
    """Append the rest of ``url`` to ``part``. True when complete; False when the stream ended early."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "inpaint-zoo", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_timeout())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part is whole (the checks decide)
            return True
        raise
    with response:
        if offset and response.status != 206:  # the server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if offset else "wb") as f, _progress(total, offset, desc, progress) as bar:
            while block := response.read(CHUNK):
                f.write(block)
                bar.update(len(block))
    return total is None or part.stat().st_size >= total


def download_url(url: str, dest, expected: str | None = None, kind: str = "sha256", size: int | None = None,
                 progress: bool = True) -> str:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed across attempts); return the sha256."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    attempt, reason = 0, ""
    while True:
        try:
            if _fetch_into(url, part, progress, dest.name):
                break
            reason = "the connection closed before the end of the file"
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except http.client.HTTPException as exc:
            reason = f"the connection broke ({type(exc).__name__})"
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _no_space(part, exc) from None
            if not isinstance(exc, (TimeoutError, ConnectionError, urllib.error.URLError)):
                raise DownloadError(f"cannot write {part}: {exc}") from None
            why = getattr(exc, "reason", exc)
            reason = f"no data for {_timeout():g} s (timed out)" if isinstance(why, TimeoutError) or \
                isinstance(exc, TimeoutError) else f"connection failed ({why})"
        attempt += 1
        if attempt > _retries():
            kept = f"; the partial file {part} resumes next time" if part.is_file() else ""
            raise DownloadError(f"{url}: {reason}, gave up after {attempt} attempts{kept}")
        time.sleep(min(0.2 * 2**attempt, 3.0))
    return finalize(part, dest, expected, kind, size, url)


def download_gdrive(file_id: str, dest, expected: str | None = None, kind: str = "sha256",
                    size: int | None = None, progress: bool = True) -> str:
    """Google Drive file ids go through ``gdown`` (it handles the confirmation page), then the same checks."""
    try:
        import gdown
    except ImportError:
        raise DownloadError("Google Drive sources need gdown: pip install gdown") from None
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        got = gdown.download(id=file_id, output=str(part), quiet=not progress, resume=True, timeout=_timeout())
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _no_space(part, exc) from None
        raise DownloadError(f"Google Drive file {file_id}: {exc}") from None
    except Exception as exc:  # gdown raises its own errors for quota / permission pages
        raise DownloadError(f"Google Drive file {file_id}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not got or not part.is_file():
        raise DownloadError(f"Google Drive file {file_id} could not be downloaded")
    return finalize(part, dest, expected, kind, size, f"gdrive:{file_id}")

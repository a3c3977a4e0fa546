"""Downloads that resume and verify: every dataset file we fetch goes through ``download``."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from perceptreg.core.errors import PerceptregError
from perceptreg.storage import fileio


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(fileio.guarded(path), "rb") as f:  # a FIFO or a device would never end
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, checksum: str) -> bool:
    """``checksum`` is "sha256:<hex>", "md5:<hex>", or a bare SHA-256 hex digest."""
    algorithm, _, expected = checksum.rpartition(":")
    return digest_of(path, algorithm or "sha256") == expected


def download(urls: Sequence[str], dest: str | Path, checksum: str, timeout: float = 30.0) -> Path:
    """Fetch ``dest`` from the first URL that works, resuming a ``.part`` file, verifying
    ``checksum`` (SHA-256 hex, or "md5:<hex>" where only an MD5 is published).

    A file already present with the right checksum is kept. Raises ``PerceptregError``
    (one line) listing every URL tried and why it failed, and where to put the file by hand.
    A transfer cut short keeps its ``.part`` file for the next call to resume; one with the
    wrong checksum is deleted.
    """
    dest = Path(dest)
    if dest.exists() and _matches(dest, checksum):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # --data-root /dev/null, a file, a read-only folder
        raise PerceptregError(f"cannot download {dest.name} into {dest.parent}: not a writable folder "
                              f"({err.strerror or err}); give a writable folder as `data_root`") from None
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            _fetch_resuming(url, part, timeout)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            kept = f" ({part.stat().st_size} bytes kept in {part}: run again to resume)" if part.exists() else ""
            failures.append(f"{url}: {getattr(err, 'reason', err)}{kept}")
            continue
        if _matches(part, checksum):
            os.replace(part, dest)
            return dest
        failures.append(f"{url}: checksum mismatch (expected {checksum}; the download was deleted, "
                        f"run again to download it anew)")
        part.unlink()
    raise PerceptregError(f"could not download {dest.name}; tried: " + "; ".join(failures)
                          + f". If this machine is offline or the mirrors are down, copy {dest.name} into "
                          f"{dest.parent} by hand.")


def _fetch_resuming(url: str, part: Path, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: the part file already holds the whole file
            raise
        return
    expected, received = response.length, 0  # the Content-Length, None when not sent
    with response, open(part, "ab" if response.status == 206 else "wb") as out:
        # 200 instead of 206: the server ignored the Range header, so start over.
        for chunk in iter(lambda: response.read(1 << 16), b""):
            out.write(chunk)
            received += len(chunk)
    if expected is not None and received < expected:
        # http.client ends a body cut short without an error: without this check the part
        # file would be checked, found wrong and deleted instead of resumed.
        raise ConnectionError(f"the connection closed after {received} of {expected} bytes")

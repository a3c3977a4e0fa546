"""Downloads that resume and verify: every dataset file we fetch goes through ``download``."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from perceptreg.core import checkpoint
from perceptreg.core.errors import PerceptregError


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(checkpoint.guarded(path), "rb") as f:  # a FIFO or a device would never end
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
    listing every URL tried and why it failed, and where to put the file by hand.
    """
    dest = Path(dest)
    if dest.exists() and _matches(dest, checksum):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            _fetch_resuming(url, part, timeout)
        except (urllib.error.URLError, OSError) as err:
            failures.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        if _matches(part, checksum):
            os.replace(part, dest)
            return dest
        failures.append(f"{url}: checksum mismatch (expected {checksum})")
        part.unlink()
    raise PerceptregError(f"could not download {dest.name}; tried:\n  " + "\n  ".join(failures)
                          + f"\nIf this machine is offline or the mirrors are down, copy {dest.name} into {dest.parent} by hand.")


def _fetch_resuming(url: str, part: Path, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: the part file already holds the whole file
            raise
        return
    with response, open(part, "ab" if response.status == 206 else "wb") as out:
        # 200 instead of 206: the server ignored the Range header, so start over.
        for chunk in iter(lambda: response.read(1 << 16), b""):
            out.write(chunk)

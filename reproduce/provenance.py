"""The commit of the code a page was made with, for its provenance: git's answer. The one
subprocess of this package, and it runs git, never perceptreg (tests/reproduce/test_consumer.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def commit() -> str:
    """The git commit of this code ("+ uncommitted changes" where the tree differs), or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(here), "diff", "--quiet", "HEAD"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.returncode == 1 else "")

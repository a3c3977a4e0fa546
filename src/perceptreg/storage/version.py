"""The version of the code that writes a results file, recorded in it (``schema.sealed``), so
that a number read back names the code that made it: "perceptreg 0.1.0, commit <sha>", the
commit where the package runs from a git checkout ("-dirty" with uncommitted changes)."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """"perceptreg 0.1.0, commit 0123abc...[-dirty]", or without the commit outside a git checkout."""
    try:
        version = metadata.version("perceptreg")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    return f"perceptreg {version}" + (f", commit {commit}" if (commit := _git_commit()) else "")


def _git_commit() -> str | None:
    """The commit of the checkout the package is imported from, or None (no git, no checkout)."""
    try:
        # --no-optional-locks: reading the version never writes the checkout's index (git status
        # would refresh it under index.lock, a write into the user's repository)
        found = subprocess.run(["git", "--no-optional-locks", "-C", str(Path(__file__).resolve().parent), "describe", "--always",
                                "--dirty", "--abbrev=40", "--exclude=*"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None

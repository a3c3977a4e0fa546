"""The `perceptreg` command: a thin layer over the library; each command is one library call
that returns a typed result, which the command prints.

``main`` is the click group (``perceptreg.cli.commands``), imported on first use; ``run`` is
the console script, which imports it.
"""

import sys

from perceptreg.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"perceptreg.cli.commands": ("main",)})


def run() -> None:
    """The `perceptreg` console script. Importing the commands takes a second or more (click,
    then torch on first use); a Ctrl-C in that time is answered as one during a command is:
    one line and exit code 130, not a traceback."""
    try:
        from perceptreg.cli.commands import main
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        raise SystemExit(130) from None
    main()


__all__ = ["main", "run"]

"""`perceptreg explore`: the explorer app of run folders built in one call, and served.

    serve(explorer_app(["runs/demo"]), port=8765)  # until Ctrl+C
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

from perceptreg.core.errors import PerceptregError
from perceptreg.runs import open_run
from perceptreg.views.explorer import create_app
from perceptreg.views.explorer_server import allowed_hosts, listening_socket

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def explorer_app(paths: Sequence[str | Path], device: str = "cpu", layer: str | None = None,
                 host: str = "127.0.0.1"):
    """The explorer of the runs at ``paths`` (several: compared on the first one's test set),
    answering requests addressed to ``host`` alone; beyond loopback, with a warning."""
    if not host.strip():  # the empty address binds every interface: say so in full
        raise PerceptregError("`host` is empty; give 0.0.0.0 to serve on every interface, or an address")
    if host not in LOOPBACK:
        warnings.warn(f"`host` {host} serves the explorer beyond this machine; it has no authentication",
                      UserWarning, stacklevel=2)
    return create_app([open_run(path) for path in paths], device=device, layer=layer, hosts=allowed_hosts(host))


def serve(app, host: str = "127.0.0.1", port: int = 8765, ready: Callable[[str], None] = print) -> None:
    """Serve ``app`` (``explorer_app``) on http://host:port until interrupted; ``ready`` is
    told its address (http://host:port) once the port is bound. In a notebook: ``explorer_server.serve_in_background``."""
    import uvicorn

    # Bound here, not by uvicorn: a port in use is one Error line (uvicorn logs and exits 1).
    with listening_socket(host, port) as sock:
        ready(f"http://{host}:{port}")
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])

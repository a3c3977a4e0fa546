"""Commands that show a run: report (HTML) and explore (the web app)."""

from __future__ import annotations

from pathlib import Path

import click

from perceptreg.cli.app import OutPath, device_option, layer_option, main

# --- report and explorer ----------------------------------------------------------------------

@main.command("report")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=OutPath(dir_okay=False),
              help="HTML file. [default: RUN/report.html; with --layer, RUN/report_LAYER.html]")
@click.option("--layer", help="Of a run of `attach`: report this layer alone. [default: every layer]")
def report_command(run, out, layer):
    """One self-contained HTML page of the run: config, training curves, perception,
    attacks, latent edits, sweep; what the run lacks is named with the command to make it.
    Of a run of `attach`, every layer's measures and perception, or one layer's with --layer.

    Example: perceptreg report runs/demo
    """
    from perceptreg.views import report

    click.echo(f"report: {report.write_report(run, out, layer)}")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@main.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the model to the network.")
@device_option
@layer_option
def explore(runs, port, host, device, layer):
    """Serve a web page to explore the run's model: gallery of perceptions, live attacks,
    a slider along a latent direction, a map of the latents, and your own drawings or
    uploads. Several runs: the same images and attacks through each run's perception.

    Example: perceptreg explore runs/demo --port 8765

    Example: perceptreg explore runs/joint runs/post-hoc
    """
    import uvicorn

    from perceptreg.runs import open_run
    from perceptreg.views.explorer import create_app
    from perceptreg.views.explorer_server import allowed_hosts, listening_socket

    if host not in LOOPBACK:
        click.echo(f"Warning: --host {host} serves the explorer beyond this machine; it has no "
                   f"authentication", err=True)
    app = create_app([open_run(path) for path in runs], device=device, layer=layer, hosts=allowed_hosts(host))
    # Bound here, not by uvicorn: a port in use is one Error line (uvicorn logs and exits 1).
    with listening_socket(host, port) as sock:
        click.echo(f"explorer of {', '.join(map(str, runs))} on http://{host}:{port} (Ctrl+C to stop)")
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])

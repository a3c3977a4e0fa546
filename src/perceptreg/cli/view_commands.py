"""Commands that show a run: perceive (the perception grid), report (HTML) and explore (the
web app). Each is one library call; this module parses the options and prints the result."""

from __future__ import annotations

from pathlib import Path

import click

from perceptreg import runs
from perceptreg.cli.app import OutPath, device_option, layer_option, main, plain_warnings


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n", default=20, show_default=True, help="Number of test images (at most the test set).")
@click.option("--out", type=OutPath(dir_okay=False),
              help=f"PNG to write. [default: RUN/{runs.PERCEPTION}; of a run of `attach`, perception_LAYER.png]")
@device_option
@layer_option
@click.option("--judge", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder whose model reads P(x): its accuracy on x, how often it reads P(x) as the true "
                   "class, and the distance of x and P(x) in its features. [default: on natural images the "
                   "dataset's CNN judge once trained (perceptreg train-judge); else no reading]")
@click.option("--read-size", type=click.IntRange(min=1), help="Test images the judge reads (a stratified "
              "sample; at most the test set). [default: as many as attach scores: 10,000 of digits, 1,000 of natural images]")
@click.option("--more-judges", "more_judges", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another run whose model reads P(x) beside the 3-NN pixel judge and --judge (repeatable).")
@click.option("--attacked", is_flag=True, help="Each judge also reads x_adv and P(x_adv) (PGD with default "
              "settings at the dataset's radius).")
def perceive(run, attacked, **options):
    """Grid of test images x beside the model's perception P(x) = D(F(x)), and an
    independent judge's reading of P(x), each number with its 95 % interval.

    Example: perceptreg perceive runs/demo --n 20
    """
    from perceptreg.adversarial.attacks import AttackSettings
    from perceptreg.figures.perception import perceive as draw

    click.echo("\n".join(draw(run, **options, attack=AttackSettings() if attacked else None).lines()))


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
    from perceptreg.views.report import write_report

    click.echo(f"report: {write_report(run, out, layer).path}")


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
    from perceptreg.views.explore import explorer_app, serve

    with plain_warnings(click.get_current_context().command):  # its warnings name its own flags
        app = explorer_app(runs, device, layer, host)
    serve(app, host, port, ready=lambda url: click.echo(f"explorer of {', '.join(map(str, runs))} on {url} "
                                                        f"(Ctrl+C to stop)"))

"""The command that edits images along latent directions: interpolate (``edits.interpolation``)."""

from __future__ import annotations

from pathlib import Path

import click

from perceptreg import runs
from perceptreg.cli.app import OutPath, attack_options, judge_option, main, run_argument


@main.command()
@run_argument
@click.option("--target", required=True, type=int, help="The class to edit toward.")
@click.option("--source", type=int, help="Edit (and fit the mean direction on) images of this class only. [default: every other class]")
@click.option("--alphas", default="0:2:0.25", show_default=True, help="start:stop:step, or a comma-separated list.")
@click.option("--images", "n_images", default=8, show_default=True, type=click.IntRange(min=1),
              help="Test images to edit (the grids show the first 20; at most those of the source classes).")
@click.option("--from-file", type=click.Path(exists=True, path_type=Path), help="Edit this image file (or folder of images) instead.")
@click.option("--fit-images", default=100, show_default=True, type=click.IntRange(min=1),
              help="Training images the mean direction is averaged over (at most those of the source classes).")
@click.option("--apply-direction", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this saved mean direction (.safetensors) instead of fitting one.")
@click.option("--save-direction", type=OutPath(dir_okay=False),
              help="Save the mean direction here. [default: direction-<source>-to-<target>.safetensors in the --out folder]")
@click.option("--compare", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second run (e.g. post-hoc) edited on the same images, its curves dashed.")
@attack_options
@judge_option
@click.option("--out", type=OutPath(file_okay=False), help="Folder for the outputs. [default: RUN]")
def interpolate(run, target, source, alphas, n_images, from_file, fit_images, apply_direction,
                save_direction, compare, settings, device, judge_run, out):
    """Edit images toward a class along latent directions found by a targeted attack:
    D(F(x) + a * dz), dz = F(x_adv) - F(x), per image and averaged over training images.
    Writes the grids, the flip curves (how often H, C and the judge read the target, by
    alpha), the change maps and interpolation_metrics.json.

    Example: perceptreg interpolate runs/demo --target 8 --alphas 0:2:0.25
    """
    from perceptreg.edits import latent
    from perceptreg.edits.interpolation import interpolate as edit_along
    from perceptreg.edits.study import EditSettings

    edit = EditSettings(target, source, latent.parse_alphas(alphas), n_images, fit_images, from_file, apply_direction)
    result = edit_along(run, edit, settings, compare=runs.open_run(compare) if compare else None,
                        judge=runs.open_run(judge_run) if judge_run else None, out=out,
                        save_direction=save_direction, device=device)
    if result.saved_direction:
        click.echo(f"mean direction saved: {result.saved_direction}")
    for line in result.lines():
        click.echo(line)
    click.echo(f"written to {out or run.path}: interpolation_per-image.png, interpolation_mean.png, "
               f"{runs.INTERPOLATION_FLIP}, {runs.INTERPOLATION_CHANGE}, {runs.INTERPOLATION_METRICS}")

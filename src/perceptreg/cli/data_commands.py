"""`perceptreg prepare`: one call of ``training.prepared.prepare_dataset``; this module parses
the options and prints the result."""

from __future__ import annotations

import click

from perceptreg.cli.app import OutPath, main


@main.command()
@click.option("--dataset", required=True, help="Any dataset `train` takes (e.g. celeba:Eyeglasses).")
@click.option("--out", required=True, type=OutPath(file_okay=False), help="Folder to write.")
@click.option("--data-root", help="Folder of file-based datasets.")
def prepare(dataset, out, data_root):
    """Write a dataset once as memory-mapped .npy files, so training reads it from disk
    batch by batch with a small resident set: then train with --dataset memmap:OUT.

    Example: perceptreg prepare --dataset celeba:Eyeglasses --out data/celeba-eyeglasses
    """
    from perceptreg.training.prepared import prepare_dataset

    click.echo(prepare_dataset(dataset, out, data_root).line())

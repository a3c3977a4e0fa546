"""`perceptreg attach`: decoders on layers of a model the user already has."""

from __future__ import annotations

from pathlib import Path

import click

from perceptreg.cli.app import OutPath, as_flags, attack_options, defaults_of, main
from perceptreg.cli.decoder_options import decoder_loss_from, decoder_loss_options
from perceptreg.core.config import ATTACH_MODES, AttachConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.data.registry import FIRST_LOOK_ATTACH as FIRST
from perceptreg.data.registry import FULL_ATTACH as FULL
from perceptreg.data.registry import help_text

DEFAULTS = defaults_of(AttachConfig)


def parse_normalize(text: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """"0.1307,0.3081" -> ((0.1307,), (0.3081,)): the means of every channel, then the stds."""
    from perceptreg.sweeps.sweep import parse_list

    if text is None:
        return None
    values = parse_list(text, float, "normalize", "0.1307,0.3081")
    if len(values) % 2:
        raise PerceptregError(f"`normalize` {text!r}: give one mean per channel, then one std per channel")
    return values[:len(values) // 2], values[len(values) // 2:]


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    """"3,224,224" -> (3, 224, 224); the ranges are AttachConfig's to check."""
    from perceptreg.sweeps.sweep import parse_list

    if text is None:
        return None
    values = parse_list(text, int, "input_shape", "3,224,224")
    if len(values) != 3:
        raise PerceptregError(f"`input_shape` {text!r}: give three sizes, channels,height,width (e.g. 3,224,224)")
    return values


@main.command("attach")
@click.option("--model", required=True,
              help="FILE.py:FUNCTION or package.module:FUNCTION returning your classifier, an nn.Module from "
                   "images in [0, 1] to logits.")
@click.option("--model-kwargs", help="Keyword arguments of that function, NAME=VALUE comma-separated "
                                     "(e.g. num_classes=10,width=2).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="Its state dict: .safetensors, or .pt/.pth as torch.save(model.state_dict(), ...) writes it "
                   "(or a checkpoint holding one under state_dict or model); read without unpickling code.")
@click.option("--random-weights", is_flag=True, help="No --weights: the model as FUNCTION returns it (random "
                                                     "weights, or those it loads itself).")
@click.option("--layers", required=True, help="Module names, comma-separated, as in model.named_modules().")
@click.option("--normalize", help="The per-channel MEAN,STD your model expects (3 channels: 3 means, then 3 stds). Left out, "
                                    "the model is tried under the dataset's usual ones (its own, ImageNet's, [-1, 1]) and the "
                                    "training images' mean and std: one "
                                    "that raises its accuracy far is named, and the run stops.")
@click.option("--dataset", default=DEFAULTS.dataset, show_default=True, help=f"Images to learn from: {help_text()}.")
@click.option("--data-root", help="Folder of file-based datasets.")
@click.option("--input-shape", help="C,H,W your model takes (e.g. 3,224,224): folder: datasets are resized to it. "
                                    "[default: the images' own size]")
@click.option("--mode", default=DEFAULTS.mode, show_default=True, type=click.Choice(ATTACH_MODES),
              help="post-hoc: your model frozen; joint: fine-tuned with CE + lam * the layers' mean reconstruction error.")
@click.option("--lam", default=DEFAULTS.lam, show_default=True, type=float, help="Joint: weight of the mean over the layers of their reconstruction errors.")
@decoder_loss_options
@click.option("--epochs", type=int, help=f"Epochs of the decoders. [default: {FULL['epochs']} on digits, "
                                         f"{FIRST['epochs']} on natural images]")
@click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True, type=int, help="Batch size.")
@click.option("--lr", default=DEFAULTS.lr, show_default=True, type=float, help="Adam learning rate.")
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=int, help="Seed of decoder init and shuffling.")
@click.option("--train-size", type=int, help=f"Fit on a stratified subset of this many images (0: all). [default: "
                                             f"all on digits, {FIRST['train_size']:,} on natural images]")
@click.option("--eval-size", type=int, help=f"Test images scored after each epoch (0: the whole test split). "
                                            f"[default: {FULL['eval_size']:,} on digits, {FIRST['eval_size']:,} on "
                                            f"natural images]")
@click.option("--decoder-params", type=int, help="Give every layer's decoder the same budget, at most this many "
              "parameters, to compare layers fairly. [default: widths from each activation's shape]")
@attack_options(seed_flag="--attack-seed")
@click.option("--attack-images", type=click.IntRange(min=1),
              help=f"Test images attacked to measure each layer's perception under attack. [default: "
                   f"{FULL['attack_images']} on digits, {FIRST['attack_images']} on natural images]")
@click.option("--judge", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder whose model reads the perceptions. [default: a 3-NN pixel judge on grey digits; "
                   "on natural images the dataset's CNN judge (perceptreg train-judge)]")
@click.option("--out", required=True, type=OutPath(file_okay=False), help="Run folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def attach_command(model, model_kwargs, weights, layers, normalize, input_shape, settings, attack_images, judge,
                   out, quiet, **options):
    """Perceive a model you already have: a decoder on each chosen layer learns to turn that
    layer's activation back into the image, with your model frozen bit for bit (or, with
    --mode joint, fine-tuned by the paper's objective). Measures, per layer, the
    reconstruction error and how an attack changes what the layer keeps; writes
    layers.json, layers.png and layers_attack.png.

    \b
    Time against precision (each phase shows a progress bar with the time left):
      --epochs, --train-size   fitting: fewer epochs or images leave the decoders less fitted (higher MSE);
      --eval-size              each epoch's score: fewer test images, a less precise MSE;
      --attack-images          the attack: fewer images, wider intervals on each layer's rates;
      --steps, --restarts      the attack: fewer, a weaker attack (fewer successes to read);
      --decoder-params         smaller decoders fit faster but keep less of each layer.
    The defaults depend on the images: on digits (MNIST) the full measure, within 2 minutes
    for a small CNN on 2 quiet cores; on natural images (CIFAR-10, SVHN, CelebA, colour
    folders) a first look (2 epochs on 10,000 images: 8.5 CPU-minutes for a small CIFAR-10
    VGG on 4 layers, 20 minutes on a loaded machine), which the run says how to refine.

    Example: perceptreg attach --model nets/mine.py:build --weights mine.safetensors --layers block1,block2,fc1 --out runs/mine
    """
    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.attaching.defaults import attach_config
    from perceptreg.runs.user_models import parse_kwargs

    options["decoder_loss"] = decoder_loss_from(options) or DEFAULTS.decoder_loss
    config = attach_config(model=model, model_kwargs=parse_kwargs(model_kwargs), weights=weights,
                          normalize=parse_normalize(normalize), input_shape=parse_shape(input_shape),
                          layers=tuple(n.strip() for n in layers.split(",") if n.strip()), **options)
    command = click.get_current_context().command  # the library's `names` said as this command's flags
    result = run_attach(config, out, settings, attack_images, progress=not quiet,
                        say=lambda text: click.echo(as_flags(text, command)), judge=judge)
    click.echo("\n".join(result.lines()))

"""attach at 224x224x3: a ResNet-50 and a ViT-S/16 (bench/models_224.py, random weights),
decoders on 4 layers each. Prints, per model:

- one decoder-fitting step (``fit_decoders`` on one batch) per layer alone and for the 4
  layers in one pass, in interleaved rounds (this machine's speed drifts): images/s per layer,
  the median (min-max) seconds, and the one pass as a multiple of one layer alone;
- the attack (PGD on the model, ``--steps``) and the per-layer attack evaluation
  (``measure_adversarial`` through each layer's perception of the same adversarial images, each
  alone, then all 4 as attach measures them, ``evaluate_layers_under_attack``, which runs
  H's own baselines once): images/s;
- peak resident memory of the process so far (the target: under 6 GB at batch 8 on CPU).

    python bench/attach_224.py [--model resnet50|vit_s16|both] [--batch 8] [--rounds 3] [--steps 2] [--fit-only]
    python bench/attach_224.py --device cuda --dtype bf16     # under bf16 autocast

Without CUDA, ``--device cuda`` is one Error line (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models_224 import resnet50, vit_s16  # noqa: E402

from perceptreg.adversarial.attacks import PGD  # noqa: E402
from perceptreg.adversarial.evaluation import Measuring, evaluate_layers_under_attack, measure_adversarial  # noqa: E402
from perceptreg.adversarial.judges import KNNJudge  # noqa: E402
from perceptreg.attaching.fitting import fit_decoders  # noqa: E402
from perceptreg.core.attached import attach  # noqa: E402
from perceptreg.data import as_image_dataset  # noqa: E402

MODELS = {"resnet50": (resnet50, ["layer1", "layer2", "layer3", "layer4"]),
          "vit_s16": (vit_s16, ["blocks.2", "blocks.5", "blocks.8", "blocks.11"])}
SHAPE = (3, 224, 224)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str, dtype: str):
    """bf16: torch's autocast on ``device`` (the model and the decoders stay float32, their
    matrix products and convolutions run in bf16); fp32: nothing."""
    return torch.autocast(device, torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def timed(device: str, dtype: str, work) -> tuple[float, object]:
    """(seconds, result) of ``work()`` under ``dtype``'s autocast, the device synchronized on both sides."""
    synchronize(device)
    began = time.perf_counter()
    with autocast(device, dtype):
        result = work()
    synchronize(device)
    return time.perf_counter() - began, result


def fit_step(seen, batch, layers, device, dtype) -> float:
    """Seconds of one fitting step of ``layers``' decoders on ``batch`` (one call, one batch)."""
    return timed(device, dtype, lambda: fit_decoders(seen, batch, epochs=1, batch_size=len(batch), layers=layers,
                                                     device=device, progress=False))[0]


def bench(name: str, args) -> None:
    build, layers = MODELS[name]
    torch.manual_seed(0)
    seen = attach(build(num_classes=10).to(args.device), layers, SHAPE, pixel_mean=(0.5, 0.5, 0.5))
    images = torch.randint(0, 256, (args.batch, *SHAPE), dtype=torch.uint8)
    batch = TensorDataset(images, torch.randint(0, 10, (args.batch,)))
    print(f"{name}: {args.batch} images of {SHAPE} on {args.device}, {args.dtype}"
          f"{' autocast' if args.dtype == 'bf16' else ''}"
          f"{f', {torch.get_num_threads()} threads' if args.device == 'cpu' else ''}")
    for d in seen.describe():
        print(f"  {d['layer']:<10} activation {'x'.join(map(str, d['activation_shape'])):>12}, "
              f"decoder {d['decoder_parameters'] / 1e6:5.2f}M parameters")
    bench_fitting(seen, batch, layers, args)
    if not args.fit_only:
        bench_attack(seen, batch, layers, args)
    gpu = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GB" if args.device == "cuda" else ""
    print(f"  peak RSS of the process so far: {peak_rss_gb():.2f} GB{gpu}")


def bench_fitting(seen, batch, layers, args) -> None:
    """One fitting step of each layer alone and of the 4 in one pass, interleaved round by round."""
    runs = {"4 layers, one pass": layers, **{f"{layer} alone": [layer] for layer in layers}}
    times: dict[str, list[float]] = {run: [] for run in runs}
    fit_step(seen, batch, layers, args.device, args.dtype)  # warm-up
    for _ in range(args.rounds):
        for run, chosen in runs.items():  # interleaved, round by round
            times[run].append(fit_step(seen, batch, chosen, args.device, args.dtype))
    print(f"  one fitting step, median (min-max) seconds over {args.rounds} rounds, images/s:")
    for run, values in times.items():
        middle = statistics.median(values)
        print(f"    {run:<20} {middle:7.3f}  ({min(values):.3f}-{max(values):.3f})  {args.batch / middle:7.1f} images/s")
    alone = [statistics.median(times[f"{layer} alone"]) for layer in layers]
    together = statistics.median(times["4 layers, one pass"])
    print(f"  one pass over 4 layers / one layer alone: {together / statistics.mean(alone):.2f}x the mean "
          f"({together / min(alone):.2f}x the fastest, {together / max(alone):.2f}x the slowest)")
    # the same ratio within each round, where the machine's speed drifts least
    rounds = [times["4 layers, one pass"][r] / statistics.mean(times[f"{layer} alone"][r] for layer in layers)
              for r in range(args.rounds)]
    print(f"  per round, one pass / the mean of one layer alone: median {statistics.median(rounds):.2f}x "
          f"({min(rounds):.2f}-{max(rounds):.2f}x over {args.rounds} rounds)")


def bench_attack(seen, batch, layers, args) -> None:
    """The attack, then its evaluation through each layer alone and through all as attach does."""
    x, y = batch.tensors[0].float().div(255).to(args.device), batch.tensors[1].to(args.device)
    seconds, adversarial = timed(args.device, args.dtype, lambda: PGD(seen, eps=8 / 255, steps=args.steps)(x, y))
    print(f"  attack: PGD {args.steps} steps on {args.batch} images: {seconds:.2f}s, "
          f"{args.batch * args.steps / seconds:.1f} image-steps/s")
    for layer in layers:
        seconds, _ = timed(args.device, args.dtype, lambda: measure_adversarial(
            seen.at(layer), batch, adversarial, Measuring(device=args.device)))
        print(f"  attack evaluation through {layer:<10} {seconds:6.2f}s, {args.batch / seconds:7.1f} images/s")
    seconds, _ = timed(args.device, args.dtype, lambda: evaluate_layers_under_attack(  # the same adversarial images
        seen, lambda *_: adversarial, batch, KNNJudge(as_image_dataset(batch)), device=args.device))
    print(f"  attack evaluation through all {len(layers)} layers (as attach does) {seconds:6.2f}s, "
          f"{args.batch * len(layers) / seconds:7.1f} images/s per layer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="PGD steps of the attack")
    parser.add_argument("--fit-only", action="store_true", help="time the fitting step alone (no attack)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: run fitting, attack and evaluation under torch.autocast in bfloat16")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("Error: --device cuda: this machine has no CUDA device (torch.cuda.is_available() is False); "
                 "leave out --device to run on the CPU")
    for name in MODELS if args.model == "both" else [args.model]:
        bench(name, args)


if __name__ == "__main__":
    main()

"""Inversion: what a layer keeps of an image, found without any decoder.

    result = invert("runs/demo", n=20)     # RUN/inversion.png: x, P(x) and the inversion x'
    result.feature_error, result.h_agrees  # how well x' matches, how often H reads x' as x

Optimisation-based inversion (Mahendran & Vedaldi, "Understanding deep image representations
by inverting them", CVPR 2015): images x' are optimised to give the layer's activation of x,
argmin ||Phi(x') - Phi(x)||^2 / ||Phi(x)||^2 + tv * TV(x') + norm * ||x' - 1/2||^2, with x' kept
in [0, 1]. Where the model has batch norm, its running statistics are a further image prior
(DeepInversion, Yin et al., CVPR 2020): the batch's mean and variance at the input of every
batch-norm layer are drawn toward the ones the layer saw in training.

x' is a reference for the decoder's perception P(x): both are images the layer maps near
Phi(x), but x' carries no learned prior. Where x' and P(x) differ, the decoder's prior speaks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from pydantic import ConfigDict

from perceptreg import data, runs
from perceptreg.core.errors import PerceptregError
from perceptreg.core.inversion import batch_norm_layers, invert_images, searched_module
from perceptreg.core.inversion_settings import InversionSettings
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.display import figure_html, tqdm
from perceptreg.figures.grids import Cell, h_caption, image_grid, save_png
from perceptreg.measures.records import MeanOf, Rate
from perceptreg.runs.files import INVERSION_JSON, INVERSION_PNG
from perceptreg.storage.schema import Sealed, settings_record, write_sealed

# inversion.json's record of the settings: every field of InversionSettings, in every file since the first
InversionRecord = settings_record(InversionSettings, tuple(f.name for f in fields(InversionSettings)))


class InversionFile(Sealed):
    """RUN/inversion.json (of an attach run inversion_LAYER.json): what ``invert`` measured."""

    model_config = ConfigDict(extra="forbid")
    layer: str | None  # the attached layer; None: the run's latent z
    images: int
    settings: InversionRecord  # ``InversionSettings`` as its fields
    batch_norm_layers: int  # layers whose statistics were a prior (0: the model has none)
    feature_error: MeanOf  # ||Phi(x') - Phi(x)||^2 / ||Phi(x)||^2, its mean over images
    inversion_mse: MeanOf  # squared error per pixel of x' against x
    perception_mse: MeanOf  # the same of P(x), to compare
    h_agrees: Rate  # H reads x' as it reads x
    h_agrees_perception: Rate  # H reads P(x) as it reads x
    seconds: float


@dataclass(frozen=True)
class InversionResult:
    grid: Path  # the PNG: x, P(x), x' per test image
    file: Path  # the sealed InversionFile
    layer: str | None
    images: int
    feature_error: MeanOf
    inversion_mse: MeanOf
    perception_mse: MeanOf
    h_agrees: Rate
    h_agrees_perception: Rate
    seconds: float
    inverted: torch.Tensor  # x' (N, C, H, W)

    def lines(self) -> list[str]:
        """What `perceptreg invert` prints."""
        where = f"layer {self.layer}" if self.layer else "z"
        return [f"inversion of {self.images} test images at {where} in {self.seconds:.1f} s: {self.grid}",
                measured_line(self)]

    def _repr_html_(self) -> str:
        return figure_html(self.grid, self.lines())


def measured_line(measured: InversionResult | InversionFile) -> str:
    """The measures of an inversion in one line, each with its 95 % interval."""
    return (f"feature error |Phi(x')-Phi(x)|^2/|Phi(x)|^2 {measured.feature_error.text(4)}; MSE/pixel x' "
            f"{measured.inversion_mse.text(4)}, P(x) {measured.perception_mse.text(4)}; H reads x' as x "
            f"{measured.h_agrees}, P(x) as x {measured.h_agrees_perception}")


def invert(run: runs.Run | str | Path, layer: str | None = None, n: int = 20,
           settings: InversionSettings = InversionSettings(), out: str | Path | None = None,
           device: str = "cpu", progress: bool = False) -> InversionResult:
    """Invert the run's latent (of an attach run, ``layer``'s activation; default the
    deepest) for ``n`` test images spread over the classes; draw x, P(x), x' into ``out``
    (default RUN/inversion.png, of an attach run inversion_LAYER.png) and write the
    measures beside it as RUN/inversion.json (inversion_LAYER.json)."""
    if n < 1:
        raise PerceptregError(f"`n` must be at least 1, got {n}")
    run = runs.open_run(run)
    named = run.output_layer(layer)
    out = runs.check_output_file(out or run.path / runs.for_layer(INVERSION_PNG, named), run=run.path,
                                 owned=(INVERSION_PNG, runs.for_layer(INVERSION_PNG, "*")))
    model = run.model(device, layer)
    test = run.data()[1]
    index = data.spread_over_classes(test.labels, min(n, len(test)))
    images = data.to_float(test.images[index]).to(device)
    began = time.perf_counter()
    steps = -(-len(images) // settings.batch_size) * settings.steps
    with tqdm(total=steps, desc="inverting", unit="step", disable=not progress, leave=False) as bar:
        inverted, error = invert_images(model.encoder, images, settings, searched_module(model), bar.update)
    seconds = time.perf_counter() - began
    with torch.no_grad(), evaluating(model):
        logits, _, perceived = model(images)
        read = [model.classify(seen.float()).argmax(1) == logits.argmax(1) for seen in (inverted, perceived)]
    values = {"layer": named, "images": len(images), "settings": {f.name: getattr(settings, f.name) for f in fields(settings)},
              "batch_norm_layers": len(batch_norm_layers(searched_module(model))), "feature_error": MeanOf.of(error.tolist()),
              "inversion_mse": _mse(inverted, images), "perception_mse": _mse(perceived.float(), images),
              "h_agrees": Rate.of(read[0]), "h_agrees_perception": Rate.of(read[1]), "seconds": seconds}
    file = run.path / runs.for_layer(INVERSION_JSON, named)
    write_sealed(file, InversionFile(**values).model_dump())
    grid = inversion_grid(model, images, test.labels[index], test.classes, inverted, named)
    drawn = save_png(grid, out)
    return InversionResult(drawn, file, named, len(images), **{k: values[k] for k in (
        "feature_error", "inversion_mse", "perception_mse", "h_agrees", "h_agrees_perception", "seconds")},
        inverted=inverted.cpu())


def _mse(images: torch.Tensor, reference: torch.Tensor) -> MeanOf:
    return MeanOf.of((images - reference).square().flatten(1).mean(1).double().tolist())


@torch.no_grad()
def inversion_grid(model: PerceptionNet, images: torch.Tensor, labels: torch.Tensor, classes, inverted: torch.Tensor,
                   layer: str | None = None, triples_per_row: int = 4):
    """Per test image x, P(x) and the inversion x', each captioned with H's reading."""
    with evaluating(model):
        perceived = model.perceive(images).float()
        shown = torch.stack([images, perceived, inverted.to(images)], 1).flatten(0, 1)  # x, P(x), x', ...
        confidence, predicted = model.classify(shown).float().softmax(1).max(1)
    p = f"P_{layer}(x)" if layer else "P(x)"
    cells = []
    for i, label in enumerate(labels.tolist()):
        true = classes[label]
        for j, (name, alt) in enumerate(((f"x, true {true}", f"test image of a {true}"),
                                         (p, f"{p}, the decoder's perception of that {true}"),
                                         ("x'", f"the inversion of that {true}: optimised to match its "
                                                f"{'layer ' + layer if layer else 'latent z'}, no decoder"))):
            pred, conf = int(predicted[3 * i + j]), float(confidence[3 * i + j])
            reading = h_caption(classes, pred, conf)
            cells.append(Cell(name, reading, pred != label, f"{alt}; {reading}"))
    return image_grid(shown, 3 * min(triples_per_row, len(labels)), cells,
                      cards=[(i, i + 1, i + 2) for i in range(0, len(cells), 3)],
                      title=f"test images x, their perception {p} and their inversion x' "
                            f"({'layer ' + layer if layer else 'latent z'})")


def read_inversion(run: runs.Run, layer: str | None = None) -> InversionFile | None:
    """What `invert` measured at the run's latent (of an attach run, ``layer``), as written
    to RUN/inversion.json; None where it was not run."""
    name = runs.for_layer(INVERSION_JSON, run.output_layer(layer))
    if not run.has(name):
        return None
    return InversionFile.model_validate(run.read_json(name, InversionFile, f"run `perceptreg invert {run.path}` again"))

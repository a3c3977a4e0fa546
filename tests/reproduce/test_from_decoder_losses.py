"""REPRODUCING.md's decoder-loss rows, read from hand-made perception.json files in the format
`perceptreg perceive` writes (the study's slow test checks that format on real runs): each
number and verdict worked out by hand."""

import pytest
import torch

from perceptreg.attaching.results import LayerTable
from perceptreg.data import write_memmap
from perceptreg.data.dataset import ImageDataset
from perceptreg.figures.perception import PerceptionFile
from perceptreg.measures import rate
from perceptreg.storage.schema import write_sealed
from reproduce import document, from_decoder_losses
from reproduce.reading import RunFiles
from helpers import layer_row, layers_file

MEAN = {"mean": 0.1, "low": 0.09, "high": 0.11, "n": 100}


def judge_reading(name: str, read_true: int, where_right: tuple[int, int] | None) -> dict:
    """Of 100 test images the judge reads x right 72 times and P(x) right ``read_true`` times;
    ``where_right``: (read right, of how many H classifies right)."""
    return {"judge": name, "accuracy_on_x": rate(72, 100), "p_read_true": rate(read_true, 100),
            "x_reads": [50, 50], "p_reads": [50, 50], "labels": [50, 50], "p_bias": 0.0, "x_bias": 0.0,
            "p_read_true_where_right": where_right and rate(*where_right), "blurred_read_true": rate(30, 100)}


def write_perception(root, loss: str, read_true: int, where_right, agrees: int, judges=("model cifar10-judge",)):
    folder = root / from_decoder_losses.model_folder(256, 0.01, loss)
    folder.mkdir(parents=True)
    values = {"images": 100, "pixel_mse": MEAN, "h_consistency": rate(agrees, 100), "latent_distance": MEAN,
              "perceptual_distance": MEAN, "unrelated_perceptual_distance": MEAN, "spread": MEAN, "spread_scale": 0.1,
              "judges": [judge_reading("3-NN pixels", 10, None),
                         *(judge_reading(name, read_true if name == "model cifar10-judge" else 5, where_right)
                           for name in judges)]}  # another model judge reads 5 of 100
    write_sealed(folder / "perception.json", PerceptionFile(**values).model_dump())


def claim_of(loss: str):
    (claim,) = [c for c in from_decoder_losses.DECODER_LOSS_CLAIMS if c.claim.startswith(f"with the {loss} loss")
                and "z 256, lambda 0.01," in c.claim]
    return claim


def test_a_loss_meeting_every_goal_holds_for_one_model(tmp_path):
    write_perception(tmp_path, "pixel", 20, (15, 50), 70)
    # Wilson: [50.2, 69.1], [82.6, 94.5], [88.8, 97.8]; a second model judge beside the CNN judge is not read
    write_perception(tmp_path, "deepsim", 60, (90, 100), 95, judges=("model resnet14", "model cifar10-judge"))
    ours, verdict = claim_of("deepsim").measure(RunFiles(tmp_path))
    assert (verdict.outcome, verdict.label) == ("holds", "one model")
    assert "P(x) read as true 60.0 % [50.2, 69.1], where H is right 90.0 % [82.6, 94.5], x blurred to the same " \
           "error 30.0 % [" in ours
    assert "H reads P(x) as x 95.0 % [88.8, 97.8]" in ours and "model cifar10-judge (right on x 72.0 %" in ours
    assert ours.endswith("the pixel loss at the same setting: 20.0 % [13.3, 28.9], H 70.0 % [60.4, 78.1]")


@pytest.mark.parametrize("read_true, where_right, agrees, outcome", [
    (40, (90, 100), 95, "does not hold"),  # the judge: [30.9, 49.8], below 50
    (60, (70, 100), 95, "undecided"),  # where H is right: [60.4, 78.1] straddles 70
    (60, (90, 100), 60, "does not hold"),  # H: [50.2, 69.1], below 80
])
def test_each_goal_decides(tmp_path, read_true, where_right, agrees, outcome):
    write_perception(tmp_path, "pixel", 20, (15, 50), 70)
    write_perception(tmp_path, "feature", read_true, where_right, agrees)
    assert claim_of("feature").measure(RunFiles(tmp_path))[1].outcome == outcome


def test_the_page_has_the_section_and_a_missing_model_says_what_makes_it(tmp_path):
    write_perception(tmp_path, "pixel", 20, (15, 50), 70)
    write_perception(tmp_path, "feature", 60, (90, 100), 95)
    page = document.reproducing_page(tmp_path, "memmap:/data/cifar10")
    section = page.split("## Decoder losses on CIFAR-10 (ours)", 1)[1].split("## Robust models", 1)[0]
    assert section.count("| with the ") == 12  # feature, deepsim and feature-vgg at each (z, lambda)
    assert "| with the feature-vgg loss (the feature loss through a VGG the study trains" in section
    assert "`python -m reproduce.decoder_loss_study --dataset memmap:/data/cifar10 --epochs 20" in section
    assert "**holds (one model)**" in section and "perception.json is missing (`--run --natural` makes it)" in section
    assert "decoder-losses/z256-lam0.01-feature/perception.json" in page.split("## Provenance", 1)[1]


def write_resnet(root, loss: str, deepest_right: int, above_right: int = 120):
    """The ResNet's layers.json with ``loss``: the judge (right on 140 of the 200 x) reads
    avgpool's P(x) right ``deepest_right`` times of 200, layer3's ``above_right`` times."""
    folder = root / from_decoder_losses.resnet_run(loss)
    folder.mkdir(parents=True)
    rows = [layer_row(name=name, judge="model cifar10-judge", accuracy_on_p=rate(right, 200),
                      accuracy_on_x=rate(140, 200)) for name, right in (("layer3", above_right),
                                                                           ("avgpool", deepest_right))]
    write_sealed(folder / "layers.json", LayerTable(**layers_file(*rows)).model_dump())


DEEPEST = from_decoder_losses.DECODER_LOSS_CLAIMS[-1]


@pytest.mark.parametrize("deepest_right, shown, outcome", [
    (100, "50.0 % [43.1, 56.9]", "holds"),  # all above 40
    (86, "43.0 % [36.3, 49.9]", "undecided"),  # straddles 40
    (60, "30.0 % [24.1, 36.7]", "does not hold"),
])
def test_the_deepest_layer_row_decides_on_deepsim_beside_the_pixel_loss(tmp_path, deepest_right, shown, outcome):
    write_resnet(tmp_path, "pixel", 20)
    write_resnet(tmp_path, "deepsim", deepest_right)
    ours, verdict = DEEPEST.measure(RunFiles(tmp_path))
    assert (verdict.outcome, verdict.label) == (outcome, "one model")
    assert ours == ("pixel: model cifar10-judge (right on x 70.0 % [63.3, 75.9]) reads avgpool's P(x) as the true "
                    "class 10.0 % [6.6, 14.9] (layer3's: 60.0 % [53.1, 66.5]); deepsim: model cifar10-judge (right on "
                    f"x 70.0 % [63.3, 75.9]) reads avgpool's P(x) as the true class {shown} "
                    "(layer3's: 60.0 % [53.1, 66.5])")


def test_the_deepest_layer_row_names_the_attach_that_makes_it(tmp_path):
    page = document.reproducing_page(tmp_path, "memmap:/data/cifar10")
    (row,) = [line for line in page.splitlines() if line.startswith("| with DeePSiM's loss, a user's CIFAR ResNet")]
    assert "examples/train_cifar_resnet.py memmap:/data/cifar10 --epochs 4 && perceptreg attach --model " in row
    assert "--decoder-loss deepsim --out resnet14-deepsim" in row and "layers.json is missing" in row


def test_each_step_makes_what_its_command_says(monkeypatch, tmp_path):
    """The library calls behind the quoted commands: the user's training script with the same
    arguments, attach with the same settings, the study with both judges."""
    def split(name: str) -> ImageDataset:  # attach's defaults read the images' shape
        return ImageDataset(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10), tuple("0123456789"), name)
    cifar = f"memmap:{write_memmap(tmp_path / 'c', split('c-train'), split('c-test'))}"
    made = {}
    monkeypatch.setattr(from_decoder_losses.runpy, "run_path",
                        lambda path: {"main": lambda argv: made.setdefault("script", (path, argv))})
    monkeypatch.setattr(from_decoder_losses, "run_attach", lambda config, out, attack, attack_images, judge:
                        made.setdefault(out, (config, attack, attack_images, judge)))
    monkeypatch.setattr(from_decoder_losses.decoder_loss_study, "study",
                        lambda *args, **options: made.setdefault("study", []).append((args, options)))
    steps = from_decoder_losses.decoder_loss_steps(cifar)
    for step in steps.values():
        step.make()
    script, argv = made["script"]
    assert script.endswith("examples/train_cifar_resnet.py") and argv == [cifar, "--epochs", "4"]
    assert f"python {script} {cifar} --epochs 4 && perceptreg attach " in steps["resnet14"].command
    for out, loss in (("resnet14", "pixel"), ("resnet14-deepsim", "deepsim")):
        config, attack, images, judge = made[out]
        assert (config.dataset, config.train_size, config.epochs, config.decoder_loss.name, config.weights) == \
               (cifar, 20000, 2, loss, "resnet.pt")
        assert config.layers == ("layer1", "layer2", "layer3", "avgpool") and config.normalize[1][2] == 0.2616
        assert (attack.eps, attack.steps, images, judge) == (0.0314, 20, 200, "cifar10-judge")
    # the study, one step per (z, lambda), each with both judges, its command naming that (z, lambda)
    assert [(args[0], args[4], args[5]) for args, _ in made["study"]] == \
           [(cifar, (256,), (0.01,)), (cifar, (256,), (1.0,)), (cifar, (64,), (0.01,)), (cifar, (64,), (1.0,))]
    assert all(options == {"judge": "cifar10-judge", "more_judges": ("resnet14",)} for _, options in made["study"])
    command = steps["decoder-losses-z64-lam1"].command
    assert " --z 64 --lams 1 --judge cifar10-judge --more-judges resnet14 --out decoder-losses" in command
    # done once the last variant's perception is measured: what git keeps, so a fresh machine skips it
    assert steps["decoder-losses-z64-lam1"].output == "decoder-losses/z64-lam1-feature-vgg/perception.json"

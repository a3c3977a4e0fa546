"""A new user's first attach on natural images: the normalization their model expects is
named before the work, the judge is said with its accuracy on x (none on natural images
without a CNN judge: no judge columns), and the sizes are the dataset's."""

import torch
from click.testing import CliRunner
from torch import nn

NET = ("import torch\nfrom torch import nn\n\n\ndef build():\n"
       "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))\n")


def brightness_folder(root, per_class: int):
    """Colour 8x8 images of two classes told apart by brightness alone: 0.7 and 0.8 (+-0.02).
    A model that learnt them in [-1, 1] (0.4 and 0.6) sees both classes above its boundary
    on raw pixels, and on ImageNet's normalization (1.1 and 1.5): only [-1, 1] separates them."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, (name, level) in enumerate((("dark", 0.7), ("bright", 0.8))):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                value = level + rng.uniform(-0.02, 0.02, (8, 8, 3))
                Image.fromarray((value * 255).round().astype(np.uint8), "RGB").save(root / split / name / f"{i}.png")
    return f"folder:{root}"


def trained_on_unit_range(tmp_path, normalized=lambda x: x * 2 - 1):
    """The net of ``NET`` trained here on images ``normalized`` (default: to [-1, 1]), saved
    as a state dict."""
    from perceptreg.data import load_dataset, to_float

    dataset = brightness_folder(tmp_path / "shades", 40)
    (tmp_path / "net.py").write_text(NET)
    train, _ = load_dataset(dataset)
    torch.manual_seed(0)
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    x = normalized(to_float(train.images))
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), train.labels).backward()
        optimizer.step()
    assert (net(x).argmax(1) == train.labels).float().mean() == 1.0  # it learnt them, normalized
    torch.save(net.state_dict(), tmp_path / "net.pt")
    return dataset


def test_leaving_out_the_normalization_a_model_expects_names_it_before_the_work(tmp_path):
    from perceptreg.cli import main

    dataset = trained_on_unit_range(tmp_path)
    common = ["attach", "--model", f"{tmp_path / 'net.py'}:build", "--weights", str(tmp_path / "net.pt"),
              "--layers", "0", "--dataset", dataset, "--epochs", "1", "--attack-images", "4", "--steps", "1",
              "--quiet"]
    result = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "raw")])
    assert result.exit_code == 1, result.output
    error = result.output.splitlines()[-1]
    assert error == ("Error: your model's accuracy on 80 test images of " + dataset + " is 50.0% on pixels in "
                     "[0, 1], 100.0% with [-1, 1] normalization: it expects normalized inputs. Pass --normalize "
                     "0.5,0.5,0.5,0.5,0.5,0.5 ([-1, 1] mean, then std); to attach it to raw pixels all the same, "
                     "--normalize 0,0,0,1,1,1")
    assert not (tmp_path / "raw" / "config.json").exists()  # nothing written: the work never began
    # with the flag it names, the model is right and the run goes on
    result = CliRunner().invoke(main, [*common, "--normalize", "0.5,0.5,0.5,0.5,0.5,0.5", "--out",
                                       str(tmp_path / "unit")])
    assert result.exit_code == 0, result.output
    assert "before fitting: 100.0%" in result.output


def test_a_model_normalized_by_its_own_images_statistics_is_told_them(tmp_path):
    """A folder of the user's images has no usual normalization of its own: a model trained
    on (x - their mean) / their std (0.75 and 0.05 here; 0.7 and 0.8 become -1 and 1) is
    named them, where none of the usual ones separates the classes."""
    from perceptreg.cli import main

    dataset = trained_on_unit_range(tmp_path, lambda x: (x - x.mean((0, 2, 3), keepdim=True)) / x.std(
        (0, 2, 3), unbiased=False, keepdim=True))
    from perceptreg.data import load_dataset, to_float
    pixels = to_float(load_dataset(dataset)[0].images).double()
    mean, std = pixels.mean((0, 2, 3)), pixels.std((0, 2, 3), unbiased=False)
    assert (mean - 0.75).abs().max() < 0.01 and 0.05 < std.min() < std.max() < 0.052  # brightness_folder's
    values = ",".join(f"{round(float(v), 4):g}" for v in (*mean, *std))
    result = CliRunner().invoke(main, ["attach", "--model", f"{tmp_path / 'net.py'}:build", "--weights",
                                       str(tmp_path / "net.pt"), "--layers", "0", "--dataset", dataset, "--epochs",
                                       "1", "--attack-images", "4", "--steps", "1", "--quiet", "--out",
                                       str(tmp_path / "raw")])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == (
        "Error: your model's accuracy on 80 test images of " + dataset + " is 50.0% on pixels in [0, 1], 100.0% with "
        f"your images' own normalization: it expects normalized inputs. Pass --normalize {values} (your images' own "
        "mean, then std); to attach it to raw pixels all the same, --normalize 0,0,0,1,1,1")


def test_the_registry_knows_each_datasets_usual_normalizations():
    from perceptreg.data.registry import usual_normalizations

    assert usual_normalizations("cifar10", 3) == {
        "CIFAR-10's": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "ImageNet's": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "[-1, 1]": ((0.5,) * 3, (0.5,) * 3)}
    assert usual_normalizations("mnist", 1) == {"MNIST's": ((0.1307,), (0.3081,)), "[-1, 1]": ((0.5,), (0.5,))}


def test_a_model_that_needs_no_normalization_is_not_stopped(tmp_path):
    """The same net trained on raw pixels: none of the usual normalizations beats it."""
    from perceptreg.attaching.normalization import expected_normalization
    from perceptreg.core.attached import attach
    from perceptreg.data import load_dataset, to_float

    train, test = load_dataset(brightness_folder(tmp_path / "shades", 40))
    torch.manual_seed(0)
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(to_float(train.images)), train.labels).backward()
        optimizer.step()
    seen = attach(net, ["0"], (3, 8, 8))
    assert expected_normalization(seen, test, "folder:x", 1.0) is None


def test_on_natural_images_without_a_cnn_judge_no_judge_reads_and_it_is_said_before_the_work(tmp_path, monkeypatch):
    from helpers import colour_folder

    from perceptreg.adversarial.attacks import AttackSettings
    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.attaching.defaults import attach_config
    from perceptreg.attaching.results import layers_table

    monkeypatch.setenv("PERCEPTREG_JUDGES", str(tmp_path / "judges"))
    (tmp_path / "net.py").write_text("import torch\nfrom torch import nn\n\n\ndef build():\n    torch.manual_seed(0)\n"
                                     "    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), "
                                     "nn.Linear(4 * 16 * 16, 2))\n")
    config = attach_config(model=f"{tmp_path / 'net.py'}:build", layers=("1",), random_weights=True, epochs=1,
                           dataset=colour_folder(tmp_path / "pets"))
    assert config.train_size == 10_000  # the first look's size, more than the folder holds
    said = []
    summary = run_attach(config, tmp_path / "run", AttackSettings(steps=1), progress=False,
                         say=lambda line: said.append((line, (tmp_path / "run" / "metrics.jsonl").exists()))).layers
    judge_line = next((line, late) for line, late in said if "no judge reads" in line)
    assert judge_line[0].startswith("no judge reads the perceptions, so the table has no judge columns")
    assert "`perceptreg train-judge --dataset folder:" in judge_line[0]
    assert "10 epochs of a VGG-style net on the whole training split" in judge_line[0]
    assert not judge_line[1]  # said before the fitting wrote its first epoch
    # the natural images' sizes: all 8 test images attacked (of the 100 by default), and a first look said
    assert summary.attack.images == 8
    work = next(line for line, _ in said if line.startswith("the work: "))
    assert work == ("the work: 1 epoch of the decoders on 8 training images, each scored on 8 test images; then 8 "
                    "test images attacked. A first look: refine it with `epochs` 10, `train_size` 0 (all), "
                    "`eval_size` 0 (all), `attack_images` 500")
    header = layers_table(summary).splitlines()[0].split("  ")
    assert [h.strip() for h in header if h.strip()] == ["layer", "activation", "decoder params", "test MSE/pixel",
                                                         "H(P(x)) = H(x)", "perceptual distance", "detector AUC"]
    assert summary.layers[0].judge is None and summary.layers[0].accuracy_on_p is None
    from perceptreg import runs
    assert runs.read_config(tmp_path / "run").train_size is None  # all 8 were used: recorded so, not as 10,000


def test_a_judge_is_said_with_its_accuracy_on_x_before_the_work_and_beside_its_readings(tmp_path):
    from helpers import USER_NET

    from perceptreg.adversarial.attacks import AttackSettings
    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.attaching.results import layers_table
    from perceptreg.core.config import AttachConfig

    said = []
    config = AttachConfig(model=f"{USER_NET}:build", layers=("fc1",), random_weights=True, epochs=1, train_size=100,
                          eval_size=100)
    summary = run_attach(config, tmp_path / "run", AttackSettings(steps=1), attack_images=20, progress=False,
                         say=lambda line: said.append((line, (tmp_path / "run" / "metrics.jsonl").exists()))).layers
    on_x = summary.layers[0].accuracy_on_x.model_dump()
    from perceptreg.measures import format_rate
    assert (f"judge: 3-NN pixels, accuracy on the 20 clean test images x it reads: {format_rate(on_x)}", False) in said
    assert f"read by 3-NN pixels (its accuracy on the clean images x: {format_rate(on_x)})" in layers_table(summary)


def test_attach_sizes_are_the_datasets_where_none_is_given(tmp_path):
    from helpers import colour_folder

    from perceptreg.attaching.defaults import attach_config
    from perceptreg.cli import main

    natural = attach_config(model="m.py:f", layers=("a",), dataset=colour_folder(tmp_path / "pets"))
    assert (natural.epochs, natural.train_size, natural.eval_size) == (2, 10_000, 1_000)
    digits = attach_config(model="m.py:f", layers=("a",), dataset="mnist5k", epochs=None)
    assert (digits.epochs, digits.train_size, digits.eval_size) == (10, None, 10_000)
    given = attach_config(model="m.py:f", layers=("a",), dataset="cifar10", epochs=3, train_size=0, eval_size=0)
    assert (given.epochs, given.train_size, given.eval_size) == (3, None, 0)  # 0: all
    assert attach_config(model="m.py:f", layers=("a",), dataset="mnist-strips").epochs == 10  # colour digits
    help_text = CliRunner().invoke(main, ["attach", "--help"], terminal_width=200).output
    assert "[default: 10 on digits, 2 on natural images]" in help_text
    assert "[default: 500 on digits, 100 on natural images]" in help_text
    assert "within 2 minutes on 2 quiet cores." not in help_text


def test_an_attached_model_shows_itself_in_one_line():
    from user_net import net

    from perceptreg.core.attached import attach

    seen = attach(net(), ["stem", "fc1"], input_shape=(1, 28, 28))
    assert repr(seen) == ("AttachedModel(SmallNet, input 1x28x28, 10 classes; layers: stem 16x14x14 (4,257 decoder "
                          "params), fc1 64 (244,993 decoder params))")


def test_a_notebook_extra_brings_the_progress_bars_widgets():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(requirement.startswith("ipywidgets") for requirement in extras["notebook"])

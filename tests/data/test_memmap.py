import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from perceptreg import data
from perceptreg.cli import main
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.training.train import train


@pytest.fixture
def small(tmp_path):
    train_set, test_set = data.mnist5k_split()
    train_set = train_set.subset(torch.arange(0, 4000, 8))
    test_set = test_set.subset(torch.arange(0, 1000, 10))
    return data.write_memmap(tmp_path / "mm", train_set, test_set), train_set, test_set


def test_round_trip_reads_from_disk(small):
    root, train_set, test_set = small
    train_mm, test_mm = data.load_memmap(root)
    assert torch.equal(train_mm.images, train_set.images) and torch.equal(test_mm.labels, test_set.labels)
    assert train_mm.pixel_mean().item() == pytest.approx(train_set.pixel_mean().item())  # from meta.json
    train_mm.release_pages()  # callable, and the data stays readable after
    assert torch.equal(train_mm.images[:3], train_set.images[:3])


def test_round_trip_keeps_attributes(tmp_path):
    train_set, test_set = data.mnist_strips_split()
    root = data.write_memmap(tmp_path / "s", train_set.subset(torch.arange(50)), test_set.subset(torch.arange(20)))
    train_mm, _ = data.load_memmap(root)
    assert torch.equal(train_mm.attributes["left_digit"], train_set.attributes["left_digit"][:50])
    assert data.default_arch(f"memmap:{root}") == "svhn"


def test_training_on_a_memmap_dataset(small, tmp_path):
    root, _, _ = small
    result = train(TrainConfig(dataset=f"memmap:{root}", epochs=1, batch_size=32), tmp_path / "run", progress=False)
    assert len(result.history) == 1 and result.history[0]["test_accuracy"] > 0.1


def test_existing_output_is_refused(small):
    root, train_set, test_set = small
    with pytest.raises(PerceptregError, match=rf"^{re.escape(str(root))} exists"):
        data.write_memmap(root, train_set, test_set)


def test_truncated_file(small):
    root, _, _ = small
    path = root / "train_images.npy"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(PerceptregError, match=r"train_images.npy: truncated"):
        data.load_memmap(root)


def test_wrong_shape(small):
    root, _, _ = small
    np.save(root / "test_labels.npy", np.zeros(7, np.int64))
    with pytest.raises(PerceptregError, match=r"test_labels.npy: .*\(7,\).*\(100,\)"):
        data.load_memmap(root)


@pytest.mark.parametrize("pixel_mean, message", [
    ([0.1, 0.2, 0.3], "pixel_mean has 3 values"),
    ([], "pixel_mean has 0 values"),
    ([1.5], "field pixel_mean.0"),
    (["x"], "field pixel_mean.0"),
])
def test_a_wrong_pixel_mean_is_named(small, pixel_mean, message):
    root, _, _ = small
    meta = json.loads((root / "meta.json").read_text())
    (root / "meta.json").write_text(json.dumps({**meta, "pixel_mean": pixel_mean}))
    with pytest.raises(PerceptregError, match=r"meta.json: .*" + re.escape(message)):
        data.load_memmap(root)



def test_a_split_with_a_key_unknown_is_named(small):
    root, _, _ = small
    meta = json.loads((root / "meta.json").read_text())
    meta["splits"]["train"]["cout"] = 3  # misspelt beside the right one
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PerceptregError, match=r"meta.json: field splits.train.cout: extra inputs"):
        data.load_memmap(root)


CUT_WHILE_TRAINING = """
import sys
from perceptreg import data
from perceptreg.core.errors import PerceptregError
train, _ = data.load_memmap(sys.argv[1])
batches = data.batches(train, 100)
next(batches)
open(sys.argv[1] + "/train_images.npy", "r+b").truncate(1000)  # another process cuts the file short
try:
    list(batches)
except PerceptregError as err:
    sys.exit(f"Error: {err}")
"""


@pytest.mark.slow
def test_a_file_cut_short_while_training_is_an_error_not_sigbus(small):
    root, _, _ = small  # in a process of its own: a read past the end of the mapping is SIGBUS (exit 135)
    done = subprocess.run([sys.executable, "-c", CUT_WHILE_TRAINING, str(root)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {root / 'train_images.npy'}: ")
    assert f"1000 of {128 + 500 * 784} bytes" in lines[0] and "`perceptreg prepare`" in lines[0]


def test_missing_meta_and_files(small, tmp_path):
    root, _, _ = small
    (root / "test_images.npy").unlink()
    with pytest.raises(PerceptregError, match="test_images.npy is missing"):
        data.load_memmap(root)
    with pytest.raises(PerceptregError, match="meta.json is missing"):
        data.load_memmap(tmp_path)


def test_prepare_command(tmp_path):
    result = CliRunner().invoke(main, ["prepare", "--dataset", "mnist5k", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "4000 + 1000 images" in result.output and f"--dataset memmap:{tmp_path / 'p'}" in result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_steps_per_epoch_caps_an_epoch(small, tmp_path):
    root, _, _ = small
    result = train(TrainConfig(dataset=f"memmap:{root}", epochs=2, batch_size=10, steps_per_epoch=3),
                   tmp_path / "capped", progress=False)
    assert len(result.history) == 2
    from safetensors.torch import load_file

    from perceptreg.runs import manifest
    capped = tmp_path / "capped"
    assert load_file(str(manifest.state_file(capped, manifest.read_state(capped))))["optim.0.step"].item() == 6  # 2 x 3 batches

"""Datasets by name: one registry entry each, errors and help generated from the entries."""

import pytest

from perceptreg import data
from perceptreg.core.errors import PerceptregError
from perceptreg.data import registry


def test_every_entry_is_listed_in_the_help_and_the_error():
    text = registry.help_text()
    for usage in ("mnist5k", "mnist", "svhn", "mnist-strips[:N]", "celeba:ATTRIBUTE", "folder:PATH", "memmap:PATH"):
        assert usage in text
    with pytest.raises(PerceptregError, match=r"choose one of mnist5k, mnist, svhn, mnist-strips\[:N\], celeba:ATTRIBUTE"):
        data.load_dataset("cifar")


@pytest.mark.parametrize("name", ["celeba", "celeba:", "mnist5k:x", "folder", "mnist-strips:"])
def test_arguments_must_match_the_entry(name):
    with pytest.raises(PerceptregError, match="unknown dataset"):
        registry.lookup(name)


def test_architectures_and_shapes():
    assert data.default_arch("mnist5k") == "mnist" and data.default_arch("celeba:Smiling") == "celeba"
    assert data.image_shape_for("mnist-strips") == (3, 32, 32)
    assert data.image_shape_for("mnist5k", arch="custom") is None


def test_training_defaults_carry_the_papers_celeba_schedule():
    assert data.training_defaults("mnist5k") == {"arch": "mnist"}
    assert data.training_defaults("mnist-strips:73257") == {"arch": "svhn"}
    assert data.training_defaults("celeba:Smiling") == {"arch": "celeba", "epochs": 30, "lr_drop_epoch": 20}


@pytest.mark.parametrize("name, shape, eps, l2_eps", [
    ("mnist5k", (1, 28, 28), 0.2, 2.0), ("mnist", (1, 28, 28), 0.2, 2.0), ("mnist-strips", (3, 32, 32), 0.2, 2.0),
    ("svhn", (3, 32, 32), 0.03, 0.5), ("celeba:Smiling", (3, 64, 64), 0.03, 0.5), ("cifar10", (3, 32, 32), 0.03, 0.5),
    ("folder:/any", (3, 32, 32), 0.03, 0.5), ("folder:/any", (1, 28, 28), 0.2, 2.0),
    ("memmap:/any", (3, 64, 64), 0.03, 0.5), ("memmap:/any", (1, 28, 28), 0.2, 2.0)])
def test_the_attack_radius_is_the_datasets_the_papers_on_mnist_and_celeba(name, shape, eps, l2_eps):
    # L-inf: the digits' 0.2 (the paper's Fig. 14), colour images' 0.03 (its CelebA figures);
    # L2: the literature's 2.0 on MNIST, 0.5 on CIFAR-10; a folder's or memmap's by its
    # images' channels, read from the shape given, not the disk
    assert registry.attack_eps(name, shape) == registry.attack_eps(name, shape, "linf") == eps
    assert registry.attack_eps(name, shape, "l2") == l2_eps


def test_a_registered_dataset_is_found_by_name(mnist5k):
    registry.register(registry.DatasetEntry("tiny", "ten digits", lambda arg, root, shape: (
        mnist5k[0].subset(range(10)), mnist5k[1].subset(range(10))), "mnist"))
    try:
        train, test = data.load_dataset("tiny")
        assert len(train) == len(test) == 10 and data.default_arch("tiny") == "mnist"
    finally:
        del registry.DATASETS["tiny"]


def test_memmap_meta_is_validated(tmp_path):
    (tmp_path / "meta.json").write_text('{"format": "perceptreg.memmap/1", "name": "x"}')
    with pytest.raises(PerceptregError, match=r"meta.json: field classes"):
        data.default_arch(f"memmap:{tmp_path}")
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(PerceptregError, match=r"meta.json: field the top level"):
        data.load_memmap(tmp_path)

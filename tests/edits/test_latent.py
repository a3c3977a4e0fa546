import json
import os
import re

import pytest
import torch
from torch import nn

from perceptreg import measures
from perceptreg.adversarial.attacks import PGD
from perceptreg.core import models
from perceptreg.core.errors import PerceptregError
from perceptreg.edits import latent
from perceptreg.edits.study import study_edits
from perceptreg.storage.schema import sealed


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.mnist().eval()


def test_alpha_zero_reproduces_the_perception_exactly(net):
    x = torch.rand(3, 1, 28, 28)
    latents, edited = latent.decode_along(net, x, torch.randn(3, 32), [0.0, 1.0])
    assert torch.equal(edited[:, 0], net.perceive(x))
    assert torch.equal(latents[:, 0], net.encoder(x))


def test_alpha_one_with_per_image_direction_reproduces_the_adversarial_perception(net):
    x = torch.rand(4, 1, 28, 28)
    adversarial, directions = latent.toward(net, x, 3, PGD(net, steps=3))
    _, edited = latent.decode_along(net, x, directions, [1.0])
    torch.testing.assert_close(edited[:, 0], net.perceive(adversarial), atol=1e-6, rtol=0)


def test_decode_along_shapes_and_a_shared_direction(net):
    x = torch.rand(2, 1, 28, 28)
    direction = torch.randn(32)
    latents, edited = latent.decode_along(net, x, direction, latent.DEFAULT_ALPHAS)
    assert latents.shape == (2, 9, 32) and edited.shape == (2, 9, 1, 28, 28)
    torch.testing.assert_close(latents[:, 4], net.encoder(x) + 1.0 * direction)


def test_mean_of_identical_images_is_their_single_direction(net):
    x = torch.rand(1, 1, 28, 28)
    attack = PGD(net, steps=3, random_start=False)
    _, single = latent.toward(net, x, 5, attack)
    mean = latent.mean_direction(net, x.expand(4, -1, -1, -1), 5, attack)
    torch.testing.assert_close(mean.vector, single[0], atol=1e-6, rtol=0)
    assert mean.count == 4 and mean.target == 5


def test_direction_files_round_trip(net, tmp_path):
    direction = latent.Direction(torch.randn(32), target=8, source=3, count=10, meta={"eps": 0.2})
    path = latent.save_direction(direction, tmp_path / "dir", net)
    assert path.name == "dir.safetensors"
    assert json.loads(path.with_suffix(".json").read_text())["latent_shape"] == [32]
    loaded = latent.load_direction(path, net)
    assert torch.equal(loaded.vector, direction.vector)
    assert (loaded.target, loaded.source, loaded.count, loaded.meta) == (8, 3, 10, {"eps": 0.2})


def test_direction_file_rejects_another_latent_size(net, tmp_path):
    path = latent.save_direction(latent.Direction(torch.randn(64), 8, None, 1), tmp_path / "svhn", models.svhn())
    with pytest.raises(PerceptregError, match=r"latent space of shape \(64,\), this model's latent has shape \(32,\)"):
        latent.load_direction(path, net)


def test_direction_file_rejects_other_classes(net, tmp_path):
    path = latent.save_direction(latent.Direction(torch.randn(32), 1, None, 1), tmp_path / "d", models.mnist(num_classes=2))
    with pytest.raises(PerceptregError, match="made for a model with 2 classes, this one has 10"):
        latent.load_direction(path, net)


def _without(key):
    return lambda meta: {k: v for k, v in meta.items() if k != key}


@pytest.mark.parametrize("damage_json, damage_tensor, message", [
    (lambda meta: [], None, "dir.json: field the top level"),
    (_without("target"), None, "dir.json: field target: field required"),
    (lambda meta: {**meta, "target": "eight"}, None, "dir.json: field target"),
    (lambda meta: {**meta, "target": 12}, None, "toward class 12, but the model has classes 0..9"),
    (lambda meta: {**meta, "format": "other"}, None, "dir.json: field format"),
    # written without a checksum, as directions saved before it were
    (_without("sha256"), lambda t: t.double(), "must be finite float32 numbers (it is torch.float64)"),
    (_without("sha256"), lambda t: torch.full_like(t, float("nan")),
     "must be finite float32 numbers (it is torch.float32 with NaN or inf)"),
    (None, lambda t: t, "dir.safetensors: its SHA-256 differs from the one in"),  # any other vector
])
def test_a_damaged_direction_file_is_named(net, tmp_path, damage_json, damage_tensor, message):
    from safetensors.torch import save_file

    path = latent.save_direction(latent.Direction(torch.randn(32), 8, 3, 10), tmp_path / "dir", net)
    if damage_json:  # sealed again (``schema.sealed``): the damage named is reached, not the file's checksum
        meta = json.loads(path.with_suffix(".json").read_text())
        damaged = damage_json({k: v for k, v in meta.items() if k != "checksum"})
        path.with_suffix(".json").write_text(json.dumps(sealed(damaged) if isinstance(damaged, dict) else damaged))
    if damage_tensor:
        save_file({"direction": damage_tensor(torch.randn(32))}, str(path))
    with pytest.raises(PerceptregError, match=re.escape(message)):
        latent.load_direction(path, net)


@pytest.mark.parametrize("field", ["target", "source", "count", "num_classes", "eps"])
def test_a_flipped_bit_in_a_direction_json_is_caught(net, tmp_path, field):
    """A bit flipped in a value of the JSON (its target class 8 becomes 9, ...) is still valid:
    its checksum names the JSON."""
    path = latent.save_direction(latent.Direction(torch.randn(32), 8, 3, 10, meta={"eps": 0.2}), tmp_path / "dir", net)
    text = path.with_suffix(".json").read_bytes()
    at = re.search(rf'"{field}": [0-9.]+'.encode(), text).end() - 1  # the value's last digit
    path.with_suffix(".json").write_bytes(text[:at] + bytes([text[at] ^ 1]) + text[at + 1:])
    with pytest.raises(PerceptregError, match=r"dir.json: its content differs from its checksum"):
        latent.load_direction(path, net)


@pytest.mark.parametrize("at", [-1, -64, 100])  # in the last float, the first, the header
def test_a_flipped_bit_in_a_direction_file_is_caught(net, tmp_path, at):
    path = latent.save_direction(latent.Direction(torch.randn(32), 8, 3, 10), tmp_path / "dir", net)
    damaged = bytearray(path.read_bytes())
    damaged[at] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(PerceptregError, match=r"dir.safetensors: (its SHA-256 differs|corrupt)"):
        latent.load_direction(path, net)


@pytest.mark.parametrize("given, message", [
    ("/dev/full", "cannot write /dev/full: it exists and is not a regular file or folder"),
    ("{tmp}", "cannot write {tmp}: it is a folder; give a file name for the direction"),
    ("{tmp}/file/d", "{tmp}/file is not a folder"),
])
def test_a_direction_is_saved_only_where_a_file_can_be(net, tmp_path, given, message):
    (tmp_path / "file").write_text("x")
    before = sorted(tmp_path.iterdir())
    with pytest.raises(PerceptregError, match=re.escape(message.format(tmp=tmp_path))):
        latent.save_direction(latent.Direction(torch.randn(32), 8, 3, 10), given.format(tmp=tmp_path), net)
    assert sorted(tmp_path.iterdir()) == before and not os.path.exists("/dev/full.safetensors")


def identity_net():
    """z = the two pixels of a 1x1x2 image, C reads class 0 when z0 > z1, D(z) = z."""
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(2))
        linear.bias.zero_()
    return models.PerceptionNet(nn.Flatten(), linear, nn.Unflatten(1, (1, 1, 2)), (1, 1, 2))


def test_flip_curve_and_readers_by_hand():
    net = identity_net()
    x = torch.tensor([[0.9, 0.1], [0.6, 0.4]]).reshape(2, 1, 1, 2)
    direction = torch.tensor([-0.3, 0.3])
    latents, edited = latent.decode_along(net, x, direction, [0.0, 1.0, 2.0])
    readings, confidence = latent.read_edits(net, latents, edited)
    # image 0: [0.9, 0.1] -> [0.6, 0.4] -> [0.3, 0.7]
    # image 1: [0.6, 0.4] -> [0.3, 0.7] -> [0.0, 1.0]
    assert readings["H(image)"].tolist() == [[0, 0, 1], [0, 1, 1]]
    assert latent.flip_curve(readings, 1) == {"H(image)": [0.0, 0.5, 1.0], "C(latent)": [0.0, 0.5, 1.0]}
    assert confidence.shape == (2, 3)


def test_flip_rate_at_alpha_zero_equals_the_clean_rate(net):
    from perceptreg import data
    test = data.mnist5k_split()[1]
    x = data.to_float(test.images[::50])
    study = study_edits(net, x, 8, PGD(net, steps=2), alphas=(0.0, 1.0, 2.0))
    for entry in (study.summary.directions.per_image, study.summary.directions.mean):
        with torch.no_grad():
            clean_on_perception = (net.classify(net.perceive(x)).argmax(1) == 8).float().mean().item()
            clean_on_input = (net.classify(x).argmax(1) == 8).float().mean().item()
        assert entry.flip_curve.H[0] == pytest.approx(clean_on_perception)
        assert entry.flip_curve.C[0] == pytest.approx(clean_on_input)


def test_locality_by_hand():
    edited = torch.zeros(2, 2, 1, 2, 2)
    edited[:, 1, 0, 0, 0] = 1.0  # every image changes in the top-left pixel only
    edited[0, 1, 0, 1, 1] = 0.5  # and image 0 a little in the bottom-right
    region = torch.tensor([[True, False], [False, False]])
    result = latent.locality(edited, region)
    assert result["change_map"].tolist() == [[1.0, 0.0], [0.0, 0.25]]
    assert result["inside"] == 1.0 and result["outside"] == pytest.approx(0.25 / 3)
    assert result["outside_to_inside"] == pytest.approx(0.25 / 3)


def test_locality_without_an_outside_is_none_not_nan():
    edited = torch.rand(2, 2, 3, 2, 2)
    result = latent.locality(edited, torch.ones(2, 2, dtype=torch.bool))  # a region covering the whole frame
    assert result["inside"] > 0 and result["outside"] is None and result["outside_to_inside"] is None
    json.dumps({k: v for k, v in result.items() if k != "change_map"}, allow_nan=False)  # JSON can hold it


def test_target_region_is_where_the_class_has_ink():
    images = torch.zeros(2, 1, 2, 2)
    images[:, 0, 0, 1] = 0.8
    images[0, 0, 1, 0] = 0.3  # mean 0.15: below the 0.2 threshold
    assert latent.target_region(images).tolist() == [[False, True], [False, False]]


@pytest.mark.parametrize("text, alphas", [
    ("0:2:0.25", (0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2)), ("0,0.5,1", (0, 0.5, 1)), ("1", (1,)),
    ("0:1:0.3", (0, 0.3, 0.6, 0.9)),
])
def test_parse_alphas(text, alphas):
    assert latent.parse_alphas(text) == pytest.approx(alphas)


@pytest.mark.parametrize("text", ["a:b:c", "0:2", "0:2:0", "2:0:0.5", "x,1", ""])
def test_parse_alphas_rejects_non_numbers(text):
    with pytest.raises(PerceptregError, match="`alphas`"):
        latent.parse_alphas(text)


def test_bad_targets_and_empty_sets(net):
    with pytest.raises(PerceptregError, match="`target` class 10 is outside the model's classes 0..9"):
        latent.toward(net, torch.rand(1, 1, 28, 28), 10, PGD(net, steps=1))
    with pytest.raises(PerceptregError, match="the image set is empty"):
        latent.mean_direction(net, torch.rand(0, 1, 28, 28), 3, PGD(net, steps=1))
    with pytest.raises(PerceptregError, match="the image set is empty"):
        study_edits(net, torch.rand(0, 1, 28, 28), 3, PGD(net, steps=1))


def test_flip_interval_is_wilsons_of_the_counts():
    readings = {"H(image)": torch.tensor([[0, 1], [0, 1], [1, 1], [0, 0]])}  # 4 images x 2 alphas
    intervals = latent.flip_interval(readings, 1)["H(image)"]
    expected = [measures.rate(1, 4), measures.rate(3, 4)]
    assert intervals == [[e["low"], e["high"]] for e in expected]


def test_a_direction_json_of_main_f9ee0de_opens_with_its_meta(net, tmp_path):
    """main f9ee0de wrote the direction's meta (its run and attack) beside the other keys."""
    path = latent.save_direction(latent.Direction(torch.randn(32), 8, 3, 10, meta={"run": "runs/demo", "eps": 0.2}),
                                 tmp_path / "dir", net)
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["meta"] == {"run": "runs/demo", "eps": 0.2}  # written under its own key
    flat = {**{k: v for k, v in saved.items() if k not in ("meta", "checksum")}, **saved["meta"]}
    path.with_suffix(".json").write_text(json.dumps(sealed(flat)))
    assert latent.load_direction(path, net).meta == {"run": "runs/demo", "eps": 0.2}


@pytest.mark.parametrize("change, field", [
    (lambda v: v.update(tagret=v.pop("target")), "target"),  # misspelt: the key it should be is missing
    (lambda v: v.update(eps=0.2), "eps"),  # beside meta, not in it
    (lambda v: v.pop("num_classes"), "num_classes"),
])
def test_a_direction_json_with_a_key_missing_or_misspelt_is_refused_naming_it(net, tmp_path, change, field):
    path = latent.save_direction(latent.Direction(torch.randn(32), 8, 3, 10, meta={"eps": 0.2}), tmp_path / "dir", net)
    values = {k: v for k, v in json.loads(path.with_suffix(".json").read_text()).items() if k != "checksum"}
    change(values)
    path.with_suffix(".json").write_text(json.dumps(sealed(values)))
    with pytest.raises(PerceptregError, match=rf"dir.json: field {field}\b"):
        latent.load_direction(path, net)

"""`perceive` reports, beside pixel MSE, the measures of measures.consistency, sealed in the run folder."""

import json
import re

import pytest
from helpers import net_with_decoder, tiny_dataset
from torch import nn

from perceptreg import figures
from perceptreg.adversarial.judges import KNNJudge
from perceptreg.core.errors import PerceptregError
from perceptreg.figures.perception import PerceptionFile, perceive
from perceptreg.measures.consistency import measure_perception
from perceptreg.runs.files import PERCEPTION_JSON
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import load_sealed_file, write_sealed


def test_perceive_measures_p_beside_pixel_mse_and_seals_them(trained_run, tmp_path):
    result = perceive(trained_run, n=3, read_size=20, out=tmp_path / "p.png")
    saved = load_sealed_file(trained_run / PERCEPTION_JSON, PerceptionFile, "run perceive again")
    assert saved["images"] == 20 == result.measures.images
    assert saved["h_consistency"] == result.measures.h_consistency.model_dump()
    assert [j.judge for j in result.measures.judges] == ["3-NN pixels"]  # grey digits without --judge
    lines = result.lines()
    assert any("H reads P(x) as it reads x" in line for line in lines)
    assert any(line.startswith("judge 3-NN pixels: x read right") for line in lines)
    layout = figures.read_layout(result.spread_grid)
    assert [cell["label"] for cell in layout["panels"][0]["cards"][0]] == ["x", "P(x)", "spread"]


def test_a_second_judge_joins_the_panel_and_a_misspelt_key_is_refused(trained_run, other_judge, tmp_path):
    result = perceive(trained_run, n=1, read_size=10, out=tmp_path / "p.png", more_judges=[other_judge])
    assert [j.judge for j in result.measures.judges] == ["3-NN pixels", "model judge"]
    values = json.loads((trained_run / PERCEPTION_JSON).read_text())
    values["spreed"] = values.pop("spread")
    (trained_run / PERCEPTION_JSON).write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match="perception.json: field spread"):
        load_sealed_file(trained_run / PERCEPTION_JSON, PerceptionFile, "run perceive again")


@pytest.mark.parametrize("damage, field", [
    (lambda v: v["spread"].update(maen=v["spread"].pop("mean")), "spread.mean"),
    (lambda v: v["judges"][0]["accuracy_on_x"].pop("n"), "judges.0.accuracy_on_x.n"),
])
def test_perception_json_with_a_key_misspelt_or_missing_inside_a_measure_is_refused_naming_it(tmp_path, damage, field):
    identity = nn.Unflatten(1, (1, 1, 2))  # P(x) = x
    measured = measure_perception(net_with_decoder(identity), tiny_dataset(), judges=[KNNJudge(tiny_dataset())])
    values = measured.model_dump()
    damage(values)
    write_sealed(tmp_path / PERCEPTION_JSON, values)
    with pytest.raises(CheckpointError, match=rf"perception.json: field {re.escape(field)}\b"):
        load_sealed_file(tmp_path / PERCEPTION_JSON, PerceptionFile, "run perceive again")


@pytest.mark.parametrize("as_main", [True, False])
def test_a_judge_of_the_models_own_architecture_is_refused_before_anything_is_drawn(trained_run, good_run, tmp_path,
                                                                                   as_main):
    twin = {"judge": good_run} if as_main else {"more_judges": [good_run]}  # the paper's MNIST net, as trained_run
    with pytest.raises(PerceptregError, match="cannot judge a model of its own architecture \\(mnist\\)"):
        perceive(trained_run, n=1, read_size=10, out=tmp_path / "p.png", **twin)
    assert not (tmp_path / "p.png").exists()


def test_without_read_size_perceive_reads_as_many_test_images_as_attach_scores(trained_run, tmp_path, monkeypatch):
    """On natural images, 1,000 (``registry.attach_sizes``), not the whole split: 6 minutes for
    a CIFAR-10 VGG's 10,000 test images under load. Stood for here by the digits' size, made 30."""
    from perceptreg.data import registry

    monkeypatch.setitem(registry.FULL_ATTACH, "eval_size", 30)
    assert registry.attach_sizes("folder:x", 3)["eval_size"] == 1_000 and registry.natural_images("cifar10", 3)
    result = perceive(trained_run, n=2, out=tmp_path / "p.png")
    assert result.measures.images == 30
    assert result.lines()[1].startswith("P(x) of 30 test images: ")

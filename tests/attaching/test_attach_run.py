"""attach's per-layer rows as text: rates with their intervals, and files written before them."""

import pytest
from helpers import layer_row, layers_file

from perceptreg.attaching.results import LAYER_HEADINGS, LayerRow, LayerTable, layers_table, reading_cells
from perceptreg.measures import rate


def test_a_row_shows_its_readings_with_their_intervals():
    # Wilson: 9 of 10 is [59.6, 98.2]; 0 of 4 [0.0, 49.0]; 1 of 4 [4.6, 69.9]; 2 of 4 [15.0, 85.0]
    assert dict(zip(LAYER_HEADINGS, reading_cells(LayerRow(**layer_row())))) == {
        "judge accuracy on P(x)": "90.0 % [59.6, 98.2]", "x_adv read as adversarial": "0.0 % [0.0, 49.0]",
        "P(x_adv) read as adversarial": "25.0 % [4.6, 69.9]", "P(x_adv) read as true": "50.0 % [15.0, 85.0]",
        "detector AUC": "0.750 [0.500, 1.000]"}
    table = layers_table(LayerTable(**layers_file(layer_row())))
    assert table.splitlines()[0].split()[:4] == ["layer", "activation", "decoder", "params"]
    assert table.splitlines()[1].split()[:6] == ["stem", "16x14x14", "1,234", "0.0123", "-", "-"]  # no consistency measures: "-"
    assert "the 4 successful attacks of 10 images (PGD linf, eps 0.2; " in table


def test_a_run_where_no_attack_succeeded_shows_dashes_and_says_why():
    row = layer_row(successful_attacks=0, accuracy_on_p=rate(9, 10), **dict.fromkeys(
        ("p_adv_read_as_adversarial", "p_adv_read_as_true", "detector_roc_auc", "p_adv_read", "x_adv_read",
         "detector_roc_auc_interval")))
    summary = LayerTable(**layers_file(row))  # layers.json's schema takes it
    assert reading_cells(summary.layers[0]) == ["90.0 % [59.6, 98.2]", "-", "-", "-", "-"]
    assert "no attack succeeded, so the readings of x_adv and P(x_adv) are undefined" in layers_table(summary)


def test_a_dataset_of_other_classes_than_the_models_logits_is_refused(tmp_path):
    """The user's net gives 10 logits; a folder of 2 classes would be scored against other
    classes (and drawn with an IndexError): one error, before any fitting, nothing written."""
    import numpy as np
    from helpers import USER_NET
    from PIL import Image

    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.core.config import AttachConfig
    from perceptreg.core.errors import PerceptregError

    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((28, 28), 40 * i, dtype=np.uint8), "L").save(tmp_path / "images" / label / f"{i}.png")
    config = AttachConfig(model=f"{USER_NET}:build", layers=("fc1",), random_weights=True,
                          dataset=f"folder:{tmp_path / 'images'}", epochs=1)
    with pytest.raises(PerceptregError, match=r"user_net.py:build: the model gives 10 logits, but folder:.* has 2 classes"):
        run_attach(config, tmp_path / "run", progress=False, say=lambda line: None)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_count_of_attacked_images_beyond_the_cap_is_refused_before_any_work(tmp_path):
    from helpers import USER_NET

    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.core.config import AttachConfig
    from perceptreg.core.errors import PerceptregError

    config = AttachConfig(model=f"{USER_NET}:build", layers=("fc1",), random_weights=True, epochs=1)
    for typo in (0, 10**9):
        with pytest.raises(PerceptregError, match=rf"^`attack_images` must be in \[1, 10,000,000\], got {typo}$"):
            run_attach(config, tmp_path / "run", attack_images=typo, progress=False, say=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_input_shape_resizes_a_folder_to_the_models_input_and_is_refused_elsewhere(tmp_path):
    import numpy as np
    from helpers import USER_NET
    from PIL import Image

    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.core.config import AttachConfig
    from perceptreg.core.errors import PerceptregError

    for label in ("a", "b"):  # 36x36: not the user net's 28x28
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((36, 36), 40 * i, dtype=np.uint8), "L").save(tmp_path / "images" / label / f"{i}.png")

    def attach_with(**settings):
        config = AttachConfig(model=f"{USER_NET}:build", layers=("fc1",), random_weights=True, epochs=1, **settings)
        run_attach(config, tmp_path / "run", progress=False, say=lambda line: None)
    folder = f"folder:{tmp_path / 'images'}"
    with pytest.raises(PerceptregError, match=r"`input_shape` \(1, 36, 36\): the model failed"):
        attach_with(dataset=folder)  # the images' own size
    with pytest.raises(PerceptregError, match="the model gives 10 logits"):  # resized: the model runs, the classes differ
        attach_with(dataset=folder, input_shape=(1, 28, 28))
    with pytest.raises(PerceptregError, match="`input_shape` 1,32,32: mnist5k's images are 1,28,28 and only folder: "):
        attach_with(dataset="mnist5k", input_shape=(1, 32, 32))
    with pytest.raises(PerceptregError, match="`input_shape` must be three sizes C,H,W, each in 1..4096"):
        AttachConfig(model="m.py:f", layers=("a",), input_shape=(1, 0, 28))


def test_attach_attacks_colour_images_in_their_radius(tmp_path, monkeypatch):
    """No eps given: the radius of the config's dataset, here a folder of colour images (0.03,
    not the digits' 0.2), written in layers.json and said in the table's note."""
    import json
    import warnings

    from helpers import colour_folder

    from perceptreg.adversarial.attacks import AttackSettings
    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.core.config import AttachConfig

    monkeypatch.setenv("PERCEPTREG_JUDGES", str(tmp_path / "judges"))
    (tmp_path / "net.py").write_text("import torch\nfrom torch import nn\n\n\ndef build():\n    torch.manual_seed(0)\n"
                                     "    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), "
                                     "nn.Linear(4 * 16 * 16, 2))\n")
    config = AttachConfig(model=f"{tmp_path / 'net.py'}:build", layers=("1",), random_weights=True, epochs=1,
                          dataset=colour_folder(tmp_path / "pets"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no standing CNN judge: no judge reads (attaching.judging)
        summary = run_attach(config, tmp_path / "run", AttackSettings(steps=1), attack_images=4, progress=False,
                             say=lambda line: None).layers
    assert summary.attack.eps == 0.03
    assert json.loads((tmp_path / "run" / "layers.json").read_text())["attack"]["eps"] == 0.03
    assert "(PGD linf, eps 0.03; its 95 % interval: DeLong)" in layers_table(summary)

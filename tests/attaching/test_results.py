import json
import re
from pathlib import Path

import pytest
import torch
from helpers import layer_row, layers_file
from user_net import net

from perceptreg import runs
from perceptreg.attaching.fitting import evaluate_layers
from perceptreg.attaching.results import LayerMeasures, LayerTable, consistency_cells, layer_cells, layers_table
from perceptreg.core.attached import attach
from perceptreg.measures import MeanOf, Rate
from perceptreg.measures.consistency import PerceptionMeasures
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import load_sealed_file, write_sealed

SUMMARY = layers_file(layer_row(name="<conv>", shape=[8, 14, 14], decoder_parameters=12345, test_recon_mse=0.01234,
                                 successful_attacks=8, detector_roc_auc=0.9, detector_roc_auc_interval=None),
                       layer_row(name="fc1", shape=[64], decoder_parameters=999, test_recon_mse=0.05,
                                 successful_attacks=8, detector_roc_auc=0.61, detector_roc_auc_interval=None),
                       accuracy=0.875, accuracy_before=0.875, eps=0.03)


def test_layer_cells_by_hand():
    header, rows, note = layer_cells(LayerTable(**SUMMARY))
    assert header[0] == "layer" and len(header) == len(rows[0]) == 11
    readings = ["90.0 % [59.6, 98.2]", "0.0 % [0.0, 49.0]", "25.0 % [4.6, 69.9]", "50.0 % [15.0, 85.0]"]
    assert rows == [["<conv>", "8x14x14", "12,345", "0.0123", "-", "-", *readings, "0.900"],
                    ["fc1", "64", "999", "0.0500", "-", "-", *readings, "0.610"]]  # an AUC without its interval: alone
    assert note == ("read by 3-NN pixels: P(x) of clean images, and x_adv and P(x_adv) of the "
                    "8 successful attacks of 10 images (PGD linf, eps 0.03; 95 % Wilson intervals; the AUC's: DeLong)")
    assert layers_table(LayerTable(**SUMMARY)).splitlines()[1].split() == " ".join(rows[0]).split()  # the CLI's cells


def test_an_attach_summary_shows_itself_as_a_table():
    table = LayerTable(**SUMMARY)
    assert table.model_dump(mode="json", exclude={"checksum"}) == SUMMARY  # what layers.json holds
    assert repr(table) == "LayerTable(post-hoc, test accuracy 87.5%, layers: <conv>, fc1)"
    page = table._repr_html_()
    assert "<caption>test accuracy 87.5%. read by 3-NN pixels: P(x) of clean images" in page
    assert "<td>&lt;conv&gt;</td><td>8x14x14</td><td>12,345</td><td>0.0123</td>" in page and "<conv>" not in page
    assert "<td>fc1</td><td>64</td><td>999</td><td>0.0500</td><td>-</td><td>-</td><td>90.0 % [59.6, 98.2]</td>" in page
    assert "<td>0.610</td></tr>" in page


def test_layer_measures_show_themselves_as_a_table():
    measures = LayerMeasures(accuracy=0.5, recon_mse={"a&b": 0.25, "fc": 0.125})
    assert measures == {"accuracy": 0.5, "recon_mse": {"a&b": 0.25, "fc": 0.125}}
    assert repr(measures) == "LayerMeasures(accuracy 50.0%; MSE/pixel: a&b 0.2500, fc 0.1250)"
    assert measures._repr_html_() == ("<table><caption>test accuracy 50.0%</caption><tr><th>layer</th>"
                                      "<th>test MSE/pixel</th></tr><tr><td>a&amp;b</td><td>0.2500</td></tr>"
                                      "<tr><td>fc</td><td>0.1250</td></tr></table>")


def test_evaluate_layers_returns_measures_that_show_themselves(digits):
    measures = evaluate_layers(attach(net(), ["stem", "fc1"], (1, 28, 28)), digits[1].subset(torch.arange(20)))
    assert isinstance(measures, LayerMeasures) and list(measures["recon_mse"]) == ["stem", "fc1"]
    assert f"<td>stem</td><td>{measures['recon_mse']['stem']:.4f}</td>" in measures._repr_html_()


MAIN = Path(__file__).parents[1] / "fixtures" / "main-f9ee0de"
DAMAGES = {  # a change to layers.json as main f9ee0de wrote it -> the field the error names
    "an attack setting misspelt": (lambda v: v["attack"].update(step=v["attack"].pop("steps")), "attack.steps"),
    "an attack without its eps": (lambda v: v["attack"].pop("eps"), "attack.eps"),
    "an attack other than PGD": (lambda v: v["attack"].update(attack="FGSM"), "attack.attack"),
    "a row without its readings": (lambda v: v["layers"][1].pop("p_adv_read"), "layers.1.p_adv_read"),
    "a reading's rate misspelt": (lambda v: v["layers"][0]["accuracy_on_p"].update(rates=0.1),
                                  "layers.0.accuracy_on_p.rates"),
    "a mode of neither kind": (lambda v: v.update(mode="frozen"), "mode"),
}


def test_layers_json_of_main_f9ee0de_opens_typed():
    table = LayerTable.model_validate(load_sealed_file(MAIN / runs.LAYERS_JSON, LayerTable, "attach again"))
    assert (table.attack.eps, table.attack.images, table.attack.norm) == (0.2, 10, "linf")
    assert table.layers[1].name == "fc1" and table.layers[0].accuracy_on_p.n == 10


@pytest.mark.parametrize("damage", DAMAGES)
def test_layers_json_with_a_key_missing_or_misspelt_is_refused_naming_it(tmp_path, damage):
    change, field = DAMAGES[damage]
    values = json.loads((MAIN / runs.LAYERS_JSON).read_text())
    change(values)
    write_sealed(tmp_path / runs.LAYERS_JSON, {k: v for k, v in values.items() if k != "checksum"})
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path / runs.LAYERS_JSON))}: field {field}\b"):
        load_sealed_file(tmp_path / runs.LAYERS_JSON, LayerTable, "attach again")


def test_the_consistency_columns_by_hand():
    measured = {"h_consistency": Rate(rate=0.75, low=0.5, high=0.9, n=40),
                "perceptual_distance": MeanOf(mean=0.125, low=0.1, high=0.15, n=40)}
    row = LayerTable(**SUMMARY).layers[1].model_copy(update={"perception": PerceptionMeasures.model_construct(**measured)})
    assert consistency_cells(row) == ["75.0 % [50.0, 90.0]", "0.125 [0.100, 0.150]"]


def test_the_note_says_what_the_consistency_columns_count_and_of_which_images():
    measured = {"images": 40, "h_consistency": Rate(rate=0.75, low=0.5, high=0.9, n=40),
                "perceptual_distance": MeanOf(mean=0.125, low=0.1, high=0.15, n=40),
                "unrelated_perceptual_distance": MeanOf(mean=1.0334, low=1.0, high=1.1, n=40)}
    rows = [row.model_copy(update={"perception": PerceptionMeasures.model_construct(**measured)})
            for row in LayerTable(**SUMMARY).layers]
    _, _, note = layer_cells(LayerTable(**SUMMARY).model_copy(update={"layers": rows}))
    assert note.endswith("DeLong). H(P(x)) = H(x): how often the model reads P(x) as it reads x; perceptual distance: "
                         "of x and P(x) in random conv features (of x and another test image: 1.033); both of the 40 "
                         "clean test images attacked")


def test_a_layer_whose_decoder_collapsed_says_so_in_its_row_and_the_note():
    measured = {"images": 40, "h_consistency": Rate(rate=0.75, low=0.5, high=0.9, n=40),
                "perceptual_distance": MeanOf(mean=0.125, low=0.1, high=0.15, n=40),
                "unrelated_perceptual_distance": MeanOf(mean=1.0334, low=1.0, high=1.1, n=40)}
    first, second = LayerTable(**SUMMARY).layers[:2]
    rows = [first.model_copy(update={"perception": PerceptionMeasures.model_construct(**measured,
                                                                                      decoder_collapsed=False)}),
            second.model_copy(update={"perception": PerceptionMeasures.model_construct(**measured,
                                                                                       decoder_collapsed=True)})]
    _, cells, note = layer_cells(LayerTable(**SUMMARY).model_copy(update={"layers": rows}))
    assert not cells[0][3].endswith("collapsed") and cells[1][3] == f"{second.test_recon_mse:.4f} collapsed"
    assert f"Collapsed decoder ({second.name}): P(x) is nearly the same picture whatever x" in note

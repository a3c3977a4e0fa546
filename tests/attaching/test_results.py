import torch
from user_net import net

from perceptreg.attaching.fitting import evaluate_layers
from perceptreg.attaching.results import LayerMeasures, LayerTable, layer_cells
from perceptreg.attaching.results import layers_table
from perceptreg.core.attached import attach

SUMMARY = {"mode": "post-hoc", "accuracy": 0.875, "accuracy_before": 0.875, "attack": {"attack": "PGD", "norm": "linf", "eps": 0.03, "images": 40},
           "layers": [{"name": "<conv>", "shape": [8, 14, 14], "decoder_parameters": 12345, "test_recon_mse": 0.01234,
                       "p_adv_read_as_adversarial": 0.25, "p_adv_read_as_true": 0.5, "detector_roc_auc": 0.9,
                       "successful_attacks": 8, "judge": "3-NN pixels"},
                      {"name": "fc1", "shape": [64], "decoder_parameters": 999, "test_recon_mse": 0.05,
                       "p_adv_read_as_adversarial": 0.75, "p_adv_read_as_true": 0.125, "detector_roc_auc": 0.61,
                       "successful_attacks": 8, "judge": "3-NN pixels"}]}


def test_layer_cells_by_hand():
    header, rows, note = layer_cells(SUMMARY)
    assert header[0] == "layer" and len(header) == len(rows[0]) == 11
    # a layers.json written before the readings' intervals and the consistency measures: "-" where it has none
    assert rows == [["<conv>", "8x14x14", "12,345", "0.0123", "-", "-", "-", "-", "25.0 %", "50.0 %", "0.900"],
                    ["fc1", "64", "999", "0.0500", "-", "-", "-", "-", "75.0 %", "12.5 %", "0.610"]]
    assert note == ("read by 3-NN pixels: P(x) of clean images, and x_adv and P(x_adv) of the "
                    "8 successful attacks of 40 images (PGD linf, eps 0.03; 95 % Wilson intervals; the AUC's: DeLong)")
    assert layers_table(SUMMARY).splitlines()[1].split() == " ".join(rows[0]).split()  # the CLI prints the same cells


def test_an_attach_summary_shows_itself_as_a_table():
    table = LayerTable(SUMMARY)
    assert table == SUMMARY  # still the dict layers.json holds
    assert repr(table) == "LayerTable(post-hoc, test accuracy 87.5%, layers: <conv>, fc1)"
    page = table._repr_html_()
    assert "<caption>test accuracy 87.5%. read by 3-NN pixels: P(x) of clean images" in page
    assert "<td>&lt;conv&gt;</td><td>8x14x14</td><td>12,345</td><td>0.0123</td>" in page and "<conv>" not in page
    assert "<td>fc1</td><td>64</td><td>999</td><td>0.0500</td><td>-</td><td>-</td><td>-</td><td>-</td><td>75.0 %</td><td>12.5 %</td><td>0.610</td>" in page


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


def test_the_consistency_columns_by_hand():
    measured = {"h_consistency": {"rate": 0.75, "low": 0.5, "high": 0.9, "n": 40},
                "perceptual_distance": {"mean": 0.125, "low": 0.1, "high": 0.15, "n": 40}}
    row = {**SUMMARY["layers"][1], "perception": measured}
    header, rows, _ = layer_cells({**SUMMARY, "layers": [row]})
    assert dict(zip(header, rows[0]))["H(P(x)) = H(x)"] == "75.0 % [50.0, 90.0]"
    assert dict(zip(header, rows[0]))["perceptual distance"] == "0.125 [0.100, 0.150]"

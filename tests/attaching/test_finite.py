"""Finite or refused: NaN or inf in the weights, logits, losses or settings of `attach` stops it
with one Error line (exit 1), never a layers.json of NaN measures."""

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from perceptreg import runs
from perceptreg.cli import main

# A small classifier, and the same one whose logits are NaN whatever its (finite) weights.
NETS = '''
import torch
from torch import nn

class NaNLogits(nn.Module):
    def forward(self, x):
        return x * float("nan")

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))

def build_nan_logits():
    return nn.Sequential(*build(), NaNLogits())
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    (folder / "nets.py").write_text(NETS)
    torch.manual_seed(0)
    weights = {k: v.clone() for k, v in torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)).state_dict().items()}
    weights["3.bias"][2] = float("nan")
    save_file(weights, str(folder / "nan.safetensors"))
    return folder


CASES = {  # extra arguments -> the words of the one Error line
    "NaN weights": (["--weights", "{nets}/nan.safetensors"], "3.bias holds NaN or inf"),
    "NaN logits": (["--model", "{nets}/nets.py:build_nan_logits"], "logits became NaN or infinite"),
    "normalize inf": (["--normalize", "inf,1"], "--normalize: every mean must be finite"),
    "normalize std 0": (["--normalize", "0.5,0"], "every std finite and > 0"),
    # lr 1e6 wrecks the model but leaves it finite (written, with its accuracy said); 1e30 overflows
    "joint, lr 1e30": (["--mode", "joint", "--lr", "1e30"], "NaN or infinite"),
}


@pytest.mark.parametrize("case", CASES)
def test_attach_stops_on_what_is_not_finite(nets, tmp_path, case, one_thread):
    extra, words = CASES[case]
    args = ["attach", "--model", f"{nets}/nets.py:build", "--layers", "1,3", "--train-size", "100",
            "--epochs", "1", "--attack-images", "10", "--steps", "2", "--quiet", "--out", str(tmp_path / "run")]
    weights = [] if "--weights" in extra else ["--random-weights"]  # the nets are meant as they are built
    result = CliRunner().invoke(main, args + weights + [a.format(nets=nets) for a in extra])
    assert result.exit_code == 1, result.output
    assert result.output.count("Error:") == 1 and words in result.output, result.output
    assert not (tmp_path / "run" / runs.LAYERS_JSON).exists()

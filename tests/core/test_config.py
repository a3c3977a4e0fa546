"""config.json checked by a schema per run kind: a bad value names the file and the setting
as written there, never a flag the user did not type."""

import json
import math

import pytest
from click.testing import CliRunner

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.core.config import AttachConfig, TrainConfig
from perceptreg.core.errors import PerceptregError

TRAIN = TrainConfig(train_size=300).to_dict()
ATTACH = AttachConfig(model="net.py:build", layers=("fc1",)).to_dict()

CASES = [  # (kind's defaults, changed settings, words of the error)
    (TRAIN, None, "setting dataset"),  # `{}`: no falling back to defaults
    (TRAIN, {"epochs": 1.5}, "setting epochs"),
    (TRAIN, {"epochs": 1e30}, "setting epochs"),
    (TRAIN, {"batch_size": math.inf}, "setting batch_size"),
    (TRAIN, {"batch_size": True}, "setting batch_size"),
    (TRAIN, {"seed": "x"}, "setting seed"),
    (TRAIN, {"seed": 2**70}, "seed must be in [0, 2^63)"),
    (TRAIN, {"seed": -1}, "seed must be in [0, 2^63)"),
    (TRAIN, {"betas": "ab"}, "setting betas"),
    (TRAIN, {"dataset": 5}, "setting dataset"),
    (TRAIN, {"lam": -1.0}, "lam must be a finite number >= 0"),
    (TRAIN, {"lr": math.nan}, "setting lr"),
    (TRAIN, {"betas": [2.0, 0.9]}, "betas must be two numbers in [0, 1)"),  # else Adam's ValueError on resume
    (TRAIN, {"lr_drop_factor": -1.0}, "lr_drop_factor must be a finite number > 0"),
    (TRAIN, {"colour": "red"}, "unknown config key(s) colour"),
    (ATTACH, {"layers": "fc1"}, "setting layers"),
    (ATTACH, {"normalize": [[0.5], [math.inf]]}, "setting normalize"),
]


@pytest.mark.parametrize("defaults, changed, words", CASES)
def test_a_bad_config_json_names_the_file_and_the_setting(defaults, changed, words):
    kind = AttachConfig if "layers" in defaults else TrainConfig
    values = {} if changed is None else {**defaults, **changed}
    with pytest.raises(PerceptregError) as raised:
        kind.from_dict(values, "RUN/config.json")
    assert str(raised.value).startswith("RUN/config.json: ") and words in str(raised.value)
    assert "`" not in str(raised.value)  # the CLI would turn `lam` into --lam, a flag nobody typed


@pytest.mark.parametrize("kind, defaults", [(TrainConfig, TRAIN), (AttachConfig, ATTACH)])
def test_a_config_as_written_reads_back_equal(kind, defaults):
    assert kind.from_dict(json.loads(json.dumps(defaults))) == kind(**{**defaults, "layers": ("fc1",)}
                                                                   if kind is AttachConfig else defaults)


@pytest.mark.parametrize("changed, words", [({"lam": -1.0}, "lam must be"),
                                            ({"dataset": "nope"}, "setting dataset: unknown dataset 'nope'")])
def test_a_resume_over_a_bad_config_is_one_line_naming_the_file(tmp_path, changed, words):
    (tmp_path / runs.CONFIG).write_text(json.dumps({**TRAIN, **changed}))
    result = CliRunner().invoke(main, ["train", "--resume", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    assert f"{tmp_path / runs.CONFIG}: {words}" in result.output and "--" not in result.output


def test_a_refused_setting_is_shown_alone_not_beside_every_other_setting():
    from perceptreg.core.config import TrainConfig

    with pytest.raises(PerceptregError) as refused:
        TrainConfig(lam=-1.0, epochs=1, train_size=200)
    assert str(refused.value) == "`lam` must be a finite number >= 0 (got lam=-1.0)"


def test_a_decoder_budget_beyond_the_cap_is_refused():
    AttachConfig(model="net.py:build", layers=("fc1",), decoder_params=10**9)
    with pytest.raises(PerceptregError, match=r"^`decoder_params` must be in \[1, 1,000,000,000\] \(got "):
        AttachConfig(model="net.py:build", layers=("fc1",), decoder_params=10**12)  # a typo: it was built, for minutes


def test_an_attach_run_of_more_layers_than_the_cap_is_refused_in_one_short_line():
    AttachConfig(model="net.py:build", layers=tuple(f"block{i}" for i in range(100)))  # a deep model's blocks
    with pytest.raises(PerceptregError) as refused:
        AttachConfig(model="net.py:build", layers=tuple(f"block{i}" for i in range(101)))
    assert str(refused.value) == ("`layers` must name at most 100 modules (got layers=('block0', 'block1', "
                                  "'block2', 'block3', 'block4', 'block...)")

"""The typed results of an attack and the files written from them: the files keep the
keys they have always had, a file written by an earlier version still loads (and is
written back byte for byte the same), and a file with a key missing or misspelt is one
error naming the file and the key."""

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from perceptreg.adversarial.summary import AttackMetricsFile, AttackSummary, NoiseMetricsFile, Rate
from perceptreg.core.errors import PerceptregError
from perceptreg.storage import schema as schema_module
from perceptreg.storage.schema import load_sealed_file, sealed

DATA = Path(__file__).parent / "data"
# written by `evaluate-attack --adaptive 0,1 --adaptive-search 0,1 --curve-steps 1,2 --curve-eps 0.1,0.2
# --compare` and `attack --from-noise` at main f9ee0de, before the results were typed
WRITTEN_BEFORE = {"attack_metrics_f9ee0de.json": AttackMetricsFile, "noise_metrics_f9ee0de.json": NoiseMetricsFile}


@pytest.mark.parametrize("name", WRITTEN_BEFORE)
def test_a_file_written_before_the_types_loads_and_is_written_back_the_same(name, monkeypatch):
    monkeypatch.setattr(schema_module, "code_version", lambda: None)  # written back unstamped, as it was
    schema = WRITTEN_BEFORE[name]
    raw = json.loads((DATA / name).read_text())
    loaded = load_sealed_file(DATA / name, schema, "fix")  # the keys a reader of dicts reads, unchanged
    assert json.dumps(loaded, sort_keys=True) == json.dumps(raw, sort_keys=True)
    typed = schema.model_validate(raw)
    leave_out = {"checksum"} | ({"paired"} if getattr(typed, "paired", True) is None else set())
    assert sealed(typed.model_dump(exclude=leave_out)) == raw  # its checksum too


def test_the_typed_summary_reads_the_files_keys_as_attributes():
    written = AttackMetricsFile.model_validate_json((DATA / "attack_metrics_f9ee0de.json").read_text())
    summary = next(iter(written.runs.values()))
    judge = summary.judges["3-NN pixels"]
    raw = next(iter(json.loads((DATA / "attack_metrics_f9ee0de.json").read_text())["runs"].values()))
    assert judge.accuracy_on_perception.rate == raw["judges"]["3-NN pixels"]["accuracy_on_P(x)"]["rate"]
    assert summary.adaptive_search.betas == [0.0, 1.0] and summary.adaptive_search.name == "search 0,1"
    assert [row.beta for row in summary.adaptive_rows()] == [0.0, 1.0, None]
    assert summary.convergence["steps"].values == [1, 2] and written.paired.paired_images >= 0
    with pytest.raises(ValidationError, match="frozen"):
        summary.images = 3


def test_what_was_not_measured_is_left_out_of_the_file():
    none = Rate.count(0, 0)
    summary = AttackSummary(images=0, clean_accuracy=none, robust_accuracy=none, attack_success_rate=none,
                            successful_attacks=0, judges={}, detector=dict(
                                score="s", auroc=0.5, clean_images=0, adversarial_images=0, mean_score_clean=0,
                                mean_score_adversarial=0))
    assert set(summary.model_dump()) == {"images", "clean_accuracy", "robust_accuracy", "attack_success_rate",
                                         "successful_attacks", "judges", "detector"}
    assert "baselines" not in summary.model_dump()["detector"] and "at_fpr" not in summary.model_dump()["detector"]


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["runs"][next(iter(d["runs"]))]["judges"]["3-NN pixels"].update(
        {"accuracy_on_Px": d["runs"][next(iter(d["runs"]))]["judges"]["3-NN pixels"].pop("accuracy_on_P(x)")}),
     "accuracy_on_P(x)"),
    (lambda d: d["runs"][next(iter(d["runs"]))]["detector"].pop("auroc"), "auroc"),
    (lambda d: d["settings"].update(epsilon=d["settings"].pop("eps")), "settings.eps"),
    (lambda d: d["runs"][next(iter(d["runs"]))]["detector"].update(auroc_ci=[0, 1]), "auroc_ci: extra inputs"),
])
def test_a_file_with_a_key_missing_or_misspelt_is_refused_naming_file_and_key(tmp_path, edit, field):
    raw = json.loads((DATA / "attack_metrics_f9ee0de.json").read_text())
    edit(raw)
    path = tmp_path / "attack_metrics.json"
    path.write_text(json.dumps({k: v for k, v in raw.items() if k != "checksum"}))
    with pytest.raises(PerceptregError) as refused:
        load_sealed_file(path, AttackMetricsFile, "make it again")
    message = str(refused.value)
    assert message.startswith(f"{path}: field ") and field in message and "\n" not in message


def test_the_noise_file_refuses_a_reader_missing(tmp_path):
    shutil.copy(DATA / "noise_metrics_f9ee0de.json", tmp_path / "noise_metrics.json")
    raw = json.loads((tmp_path / "noise_metrics.json").read_text())
    raw["reached"]["H"].pop("n")
    (tmp_path / "noise_metrics.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "checksum"}))
    with pytest.raises(PerceptregError, match=r"noise_metrics.json: field reached.H.n: field required"):
        load_sealed_file(tmp_path / "noise_metrics.json", NoiseMetricsFile, "make it again")

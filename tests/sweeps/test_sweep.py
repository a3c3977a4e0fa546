import dataclasses
import json
import re

import pytest
import torch
from click.testing import CliRunner
from helpers import read_sealed
from PIL import Image

from perceptreg import data as datasets
from perceptreg import measures
from perceptreg.cli import main
from perceptreg.core import models
from perceptreg.core.errors import PerceptregError
from perceptreg.storage.schema import write_sealed
from perceptreg.sweeps import sweep, workers
from perceptreg.sweeps.summary import (
    Spread,
    SweepRecord,
    SweepRow,
    SweepSummary,
    collapse_note,
    read_sweep,
    sweep_cells,
    sweep_table,
)


@pytest.mark.slow
def test_quick_sweep_writes_every_artefact(quick_sweep):
    out, output = quick_sweep
    for name in ("sweep.json", "sweep.md", "sweep_config.json"):
        assert (out / name).exists()
    for name in ("sweep_perception.png", "sweep_attention.png", "sweep_probes.png"):
        assert Image.open(out / name).size[0] > 100
    # 8 images, columns: x, lambda 1e-3, lambda 10, post-hoc; cells 96 px + caption
    assert Image.open(out / "sweep_perception.png").size == (4 * (96 + 2) + 2, 8 * (96 + 14 + 2) + 2)
    summary = read_sealed(out / "sweep.json")
    assert [r["variant"] for r in summary["rows"]] == ["0.001", "10", "post-hoc"]
    row = summary["rows"][0]
    for key in ("test_accuracy", "test_recon_mse", "centre_to_edge"):
        assert set(row[key]) == {"mean", "ci95"}
    assert set(row["probes"]) == {"left_digit", "right_digit", "foreground_colour", "background_colour",
                                  "label (the task)"}
    assert {"lam0.001-seed0", "lam10-seed0", "post-hoc-seed0"} <= {p.name for p in out.iterdir()}
    assert "| 0.001 | 1 |" in (out / "sweep.md").read_text() and "| post-hoc | 1 |" in output
    assert set(summary["pixel_probes"]) == {"left_digit", "right_digit", "foreground_colour", "background_colour"}
    assert set(summary["pixel_mlp_probes"]) == set(summary["pixel_probes"])
    assert "left_digit" in row["mlp_probes"] and "MLP probes on the raw pixels" in output
    assert read_sweep(out).rows[0].mlp_probes["left_digit"].mean == row["mlp_probes"]["left_digit"]["mean"]
    assert "probes on the raw pixels" in output


@pytest.mark.slow
def test_sweep_measures_what_drives_each_model(quick_sweep):
    out, _ = quick_sweep
    summary = read_sweep(out)
    share = {r.variant: r.ce_share.mean for r in summary.rows}
    assert share["post-hoc"] == 1.0  # F of post-hoc learnt from the cross-entropy alone
    assert 0 < share["10"] < share["0.001"] < 1  # a larger lambda pulls F toward reconstruction
    assert all(0 <= r.shape_spread.mean and isinstance(r.collapsed, int) for r in summary.rows)
    header = (out / "sweep.md").read_text().splitlines()[0]
    assert "| shape spread |" in header and "| CE share of F's gradient |" in header
    rows = [r.model_copy(update={"collapsed": 1 if r.variant == "10" else 0}) for r in summary.rows]
    assert collapse_note(rows).endswith("shape spread below 0.45): 10 (1 of 1 seeds)")
    assert collapse_note([r.model_copy(update={"collapsed": 0}) for r in rows]) is None
    assert "±" not in (out / "sweep.md").read_text()  # one seed: no interval, not "± 0.000"


@pytest.mark.slow
def test_sweep_resumes_model_by_model(quick_sweep, tmp_path):
    out, _ = quick_sweep
    before = {p.name: (p / "model.safetensors").stat().st_mtime_ns for p in out.iterdir() if p.is_dir()}
    saved = json.loads((out / "pixel_probes.json").read_text())
    saved["linear"]["left_digit"] = 0.5  # a value no fit gives: seen in sweep.json only if read back
    write_sealed(out / "pixel_probes.json", {k: v for k, v in saved.items() if k != "checksum"})  # as if fitted so
    # --ensemble groups the members to train, and finished ones are not among them
    result = CliRunner().invoke(main, ["sweep", "--quick", "--lams", "1e-3,10", "--ensemble", "--out", str(out)])
    assert result.exit_code == 0, result.output
    after = {p.name: (p / "model.safetensors").stat().st_mtime_ns for p in out.iterdir() if p.is_dir()}
    assert before == after  # finished models are loaded, not trained again
    assert json.loads((out / "sweep.json").read_text())["pixel_probes"]["left_digit"] == 0.5  # nor probes refitted


def test_pixel_probes_are_fitted_once_per_data(tmp_path, monkeypatch):
    config = sweep.SweepConfig(train_size=60, seeds=(0,))
    full_train, test_data = workers.load_dataset_once(config.dataset, None, datasets.image_shape_for(config.dataset))
    test_data = datasets.training_subset(test_data, 100, 0)
    fits = []
    for name in ("linear_probe", "mlp_probe"):
        monkeypatch.setattr(measures, name, lambda *args, name=name: fits.append(name) or len(args[0]) / 100)

    def probes(config):
        return sweep.pixel_probes(tmp_path, config, sweep.probe_subset(full_train, config, 0), test_data)

    first = probes(config)
    assert first.linear == {name: 0.6 for name in ("left_digit", "right_digit", "foreground_colour",
                                                   "background_colour")} and len(fits) == 8
    assert probes(config).linear == first.linear and len(fits) == 8  # read back, not fitted again
    assert probes(dataclasses.replace(config, train_size=80)).mlp["left_digit"] == 0.8  # other data: fitted
    assert json.loads((tmp_path / "pixel_probes.json").read_text())["fitted_on"]["train_size"] == 80
    for damaged in ("{", '{"fitted_on": {}, "linear": {"left_digit": "x"}, "mlp": {}}'):
        (tmp_path / "pixel_probes.json").write_text(damaged)
        fits.clear()
        assert probes(config).linear == first.linear and len(fits) == 8  # a damaged cache is fitted again, not an error
    text = (tmp_path / "pixel_probes.json").read_text()
    (tmp_path / "pixel_probes.json").write_text(text.replace("0.6", "0.7", 1))  # a flipped digit, under the seal
    fits.clear()
    assert probes(config).linear == first.linear and len(fits) == 8


def test_a_members_probes_are_fitted_on_its_training_images(monkeypatch):
    # 30 training and 10 test images: each probe must get the training latents and labels
    # first, the test ones second (fitted on train, scored on test)
    train, test = datasets.mnist_strips_split()
    train, test = train.subset(torch.arange(30)), test.subset(torch.arange(10))
    config = sweep.SweepConfig(lams=(1e-2,), seeds=(0,), post_hoc=False, epochs=1, workers=1)
    _, train_config = config.variants()[0]
    calls = []

    def probe(train_z, train_y, test_z, test_y):
        calls.append((len(train_z), len(train_y), len(test_z), len(test_y)))
        return 0.5

    monkeypatch.setattr(measures, "linear_probe", probe)
    monkeypatch.setattr(measures, "mlp_probe", probe)
    model = models.build(train_config.arch, 10)
    member, _ = sweep._measure(model, train_config, train, test, "cpu", max_attributes=2)
    assert set(calls) == {(30, 30, 10, 10)} and len(calls) == 2 * 3  # the label and two attributes, two kinds
    assert set(member.probes) == {"label (the task)", "left_digit", "right_digit"}


def test_a_sweep_with_a_judge_reads_each_members_perception(monkeypatch):
    from perceptreg.adversarial.judges import ModelJudge

    train, test = datasets.mnist_strips_split()
    train, test = train.subset(torch.arange(30)), test.subset(torch.arange(20))
    config = sweep.SweepConfig(lams=(1e-2,), seeds=(0, 1), post_hoc=False, epochs=1, workers=1)
    for name in ("linear_probe", "mlp_probe"):
        monkeypatch.setattr(measures, name, lambda *args: 0.5)
    members = []
    for (_, train_config), seed in zip(config.variants(), (0, 1)):
        torch.manual_seed(seed)
        model = models.build(train_config.arch, 10)
        # each member its own judge: the judge's accuracy on x is the member's test accuracy
        members.append(sweep._measure(model, train_config, train, test, "cpu", 0, judge=ModelJudge(model, "itself"))[0])
        assert members[-1].judge_accuracy == pytest.approx(members[-1].test_accuracy)
        assert members[-1].reading.perception_read_true.n == 20
    alone, _ = sweep._measure(model, train_config, train, test, "cpu", 0)
    assert alone.judge_accuracy is None and alone.reading is None  # no judge, no reading
    row = SweepRow.over_seeds("0.01", members)
    summary = SweepSummary(config=SweepRecord(**dataclasses.asdict(config)), rows=[row], per_seed={"0.01": members},
                           pixel_probes={}, pixel_mlp_probes={}, judge="itself")
    assert row.judge_accuracy.mean == pytest.approx(sum(m.judge_accuracy for m in members) / 2)
    assert row.feature_distance.ci95 >= 0 and summary.per_seed["0.01"][1].reading is not None
    header, _, notes = sweep_cells(summary)
    start = header.index("centre to edge") + 1
    assert header[start:start + 3] == ["judge right on x", "judge reads P(x) as true", "feature distance x-P(x)"]
    assert any(note.startswith("Judge: itself, an independent classifier") for note in notes)


def test_a_judge_reads_each_members_perception_in_the_same_forward_pass(monkeypatch):
    """The judge's reading comes from measures.evaluate's pass over the test set: a judge adds
    no forward of the member's model, and the numbers are those of the two measured apart."""
    from perceptreg.adversarial.judges import ModelJudge, read_perception

    train, test = datasets.mnist_strips_split()
    train, test = train.subset(torch.arange(30)), test.subset(torch.arange(20))
    _, train_config = sweep.SweepConfig(lams=(1e-2,), seeds=(0,), post_hoc=False, epochs=1, workers=1).variants()[0]
    for name in ("linear_probe", "mlp_probe"):
        monkeypatch.setattr(measures, name, lambda *args: 0.5)
    torch.manual_seed(0)
    model, judge = models.build(train_config.arch, 10), ModelJudge(models.build(train_config.arch, 10), "other")
    seen = []
    hook = model.encoder.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))

    def forwards(**judged) -> tuple[dict, int]:
        seen.clear()
        return sweep._measure(model, train_config, train, test, "cpu", 0, **judged)[0], sum(seen)
    alone, without = forwards()
    member, with_judge = forwards(judge=judge)
    hook.remove()
    assert with_judge == without  # not one image more through F
    assert member.reading == read_perception(model, test, judge)
    quality = measures.evaluate(model, test)
    assert (member.test_accuracy, member.test_recon_mse) == (quality["accuracy"], quality["recon_mse"])
    assert member.test_recon_mse == alone.test_recon_mse


@pytest.mark.slow
def test_report_of_a_sweep(quick_sweep):
    out, _ = quick_sweep
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.html").read_text()
    assert "Lambda sweep" in text
    # three tables: what each model does, then linear and MLP probes, each ending with raw pixels
    sweep_html = text.split('<section id="sweep">')[1].split("</section>")[0]
    tables = re.findall(r"<h3>(.*?)</h3><div class=\"numbers\"><table>(.*?)</table>", sweep_html)
    assert [heading for heading, _ in tables] == ["What each model does", "Linear probes on frozen z (test accuracy)",
                                                   "MLP probes on frozen z (test accuracy)"]
    header = re.findall(r"<th>(.*?)</th>", tables[1][1])
    assert header == ["lambda", "seeds", "label (the task)", "left digit", "right digit", "foreground colour",
                      "background colour"]
    summary = read_sweep(out)
    last = re.findall(r"<td>(.*?)</td>", tables[1][1].split("<tr>")[-1])
    assert last == ["raw pixels (reference)", "", ""] + [
        f"{summary.pixel_probes[name.replace(' ', '_')]:.3f}" for name in header[3:]]
    assert "shape spread" in tables[0][1] and "left digit" not in tables[0][1]
    accuracy = {r.variant: r.test_accuracy.mean for r in summary.rows}
    best, worst = max(accuracy, key=accuracy.get), min(accuracy, key=accuracy.get)
    top = text.split('<section id="summary">')[1].split("</section>")[0]
    items = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", top))
    assert items["data"] == "mnist-strips, 400 training images" and items["epochs"] == "1 per model"
    assert items["lambdas"] == "0.001, 10, and post-hoc" and items["seeds"].startswith("0 (one seed: no interval")
    name = {"post-hoc": "post-hoc"}
    assert items["best test accuracy"] == f"{100 * accuracy[best]:.1f} % ({name.get(best, 'lambda ' + best)})"
    assert items["worst test accuracy"].endswith(f"({name.get(worst, 'lambda ' + worst)})")
    assert "centre to edge: P(x)" in top and "mlp probe: NAME" in top  # what the columns mean
    assert text.index('id="summary"') < text.index('id="sweep"')  # at the top
    # two plots; the perception grid as 8 images x 4 models, each cell labelled with its model
    assert text.count('<img class="plot"') == 2 and text.count('<figure class="cell"') == 32
    model_report = CliRunner().invoke(main, ["report", str(out / "lam10-seed0")])
    assert model_report.exit_code == 0
    assert "one model of the sweep" in (out / "lam10-seed0" / "report.html").read_text()


@pytest.mark.parametrize("text, message", [("1e-3,x", "`lams` '1e-3,x'"), ("1e-3,,1", "`lams` '1e-3,,1'"),
                                           ("-1", "`lam` must be a finite number >= 0"),
                                           ("nan", "`lam` must be a finite number >= 0")])
def test_bad_lambda_lists(text, message):
    with pytest.raises(PerceptregError, match=message):
        sweep.SweepConfig(lams=sweep.parse_list(text, float, "lams", "1e-4,1e-2"))


def test_bad_sweep_input_is_one_line(tmp_path):
    for args, message in ((["--lams", "1,two"], "Error: --lams '1,two'"), (["--seeds", "a"], "Error: --seeds 'a'"),
                          (["--dataset", "cifar"], "Error: unknown dataset 'cifar'")):
        result = CliRunner().invoke(main, ["sweep", "--quick", "--out", str(tmp_path / "x")] + args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert not (tmp_path / "x").exists() or args[0] != "--dataset"


def test_default_grid_is_the_papers_fig3():
    assert sweep.SweepConfig().lams == (1e-4, 1e-3, 1e-2, 1e2)


def test_the_arrangement_is_chosen_for_the_device(monkeypatch):
    monkeypatch.setattr(workers, "available_cores", lambda: 4)
    on_cpu, on_cuda = sweep.SweepConfig(), sweep.SweepConfig(device="cuda")
    assert (on_cpu.workers, on_cpu.ensemble) == (4, False)  # a one-thread worker per core
    assert sweep.SweepConfig(lams=(1e-2,), seeds=(0,), post_hoc=False).workers == 1  # not more than the models
    assert (on_cuda.workers, on_cuda.ensemble) == (1, True)  # one process, the members as an ensemble
    assert sweep.SweepConfig(device="cuda", engine="ray").ensemble is False  # Ray trains members alone
    given = sweep.SweepConfig(device="cuda", workers=3, ensemble=False)
    assert (given.workers, given.ensemble) == (3, False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_fails_before_anything_is_written(tmp_path):
    config = sweep.SweepConfig(device="cuda", lams=(1e-2,), seeds=(0,), post_hoc=False, train_size=100, epochs=1)
    with pytest.raises(PerceptregError, match="CUDA is not available on this machine"):
        sweep.run_sweep(config, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


# --- reruns that cannot mislabel ---------------------------------------------------------------

ONE = dict(dataset="mnist5k", lams=(0.01,), seeds=(0,), post_hoc=False, epochs=2, train_size=200, workers=1)


@pytest.mark.parametrize("lams, seeds", [((1e-2, 0.01), (0,)), ((1e-2,), (0, 0)), ((1e-4, 0.000100000001), (0,))])
def test_a_lambda_or_seed_given_twice_is_refused(lams, seeds):
    with pytest.raises(PerceptregError, match="more than once"):
        sweep.SweepConfig(**{**ONE, "lams": lams, "seeds": seeds})


def test_a_sweep_of_more_models_than_the_cap_is_refused_before_any_is_built(monkeypatch):
    monkeypatch.setattr(sweep.SweepConfig, "variants", lambda self: [])  # the count alone decides
    sweep.SweepConfig(**{**ONE, "lams": tuple(range(1, 500)), "seeds": (0, 1), "post_hoc": True})  # 1,000: a grid
    with pytest.raises(PerceptregError, match=r"^`lams` and `seeds` make 1,002 models .*at most 1,000 in one sweep"):
        sweep.SweepConfig(**{**ONE, "lams": tuple(range(1, 501)), "seeds": (0, 1), "post_hoc": True})
    with pytest.raises(PerceptregError, match=r"make 2,000,000 models"):  # refused before the names are compared
        sweep.SweepConfig(**{**ONE, "lams": tuple(range(1, 2001)), "seeds": tuple(range(1000))})


def _stub_training(monkeypatch):
    """run_sweep up to its claim: what it trains and measures is tested elsewhere."""
    monkeypatch.setattr(sweep, "_train_and_measure", lambda *args: {"claimed": True})


def test_a_member_trained_with_other_settings_refuses_the_sweep_before_anything_is_written(tmp_path, monkeypatch):
    from perceptreg import runs
    from perceptreg.training.train import train

    _stub_training(monkeypatch)
    name, config = sweep.SweepConfig(**ONE).variants()[0]
    train(dataclasses.replace(config, epochs=1), tmp_path / name, progress=False)
    def files():  # but the writers' lock files, which hold the last writer's pid
        return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}
    before = files()
    with pytest.raises(PerceptregError, match="was trained with train_size 200 .asked 300"):
        sweep.run_sweep(sweep.SweepConfig(**{**ONE, "train_size": 300}), tmp_path, progress=False)
    assert files() == before
    assert not (tmp_path / runs.SWEEP_CONFIG).exists()
    # the same settings (more epochs) continue it; the sweep writes its config only then
    assert sweep.run_sweep(sweep.SweepConfig(**ONE), tmp_path, progress=False).summary == {"claimed": True}
    assert (tmp_path / runs.SWEEP_CONFIG).exists()


def test_a_second_sweep_on_a_busy_folder_leaves_its_sweep_config_alone(tmp_path, monkeypatch):
    from perceptreg import runs
    from perceptreg.runs import checkpoint

    _stub_training(monkeypatch)
    written = json.dumps(dataclasses.asdict(sweep.SweepConfig(**ONE)))  # the first sweep's
    (tmp_path / runs.SWEEP_CONFIG).write_text(written)
    with checkpoint.writer_lock(tmp_path):  # the first sweep
        with pytest.raises(PerceptregError, match="being written by another process"):
            sweep.run_sweep(sweep.SweepConfig(**ONE), tmp_path, progress=False)
    assert (tmp_path / runs.SWEEP_CONFIG).read_text() == written


@pytest.mark.slow
def test_a_finished_member_left_one_epoch_behind_by_a_kill_is_published_by_the_rerun(tmp_path, monkeypatch):
    from perceptreg import runs
    from perceptreg.training.train import train

    _stub_training(monkeypatch)
    name, config = sweep.SweepConfig(**ONE).variants()[0]
    member = tmp_path / name
    train(dataclasses.replace(config, epochs=1), member, progress=False)
    first = {n: (member / n).read_bytes() for n in (runs.MODEL, runs.MODEL_META)}
    train(config, member, resume=True, progress=False)
    for n, content in first.items():  # a kill after epoch 2's commit, before it was published
        (member / n).unlink()
        (member / n).write_bytes(content)
    sweep.run_sweep(sweep.SweepConfig(**ONE), tmp_path, progress=False)
    state = json.loads((member / runs.STATE_META).read_text())
    assert (member / runs.MODEL).read_bytes() == (member / state["files"]["model"]).read_bytes()
    assert json.loads((member / runs.MODEL_META).read_text())["epoch"] == 2


def test_a_sweep_summary_shows_itself_as_its_table():
    def spreads(mean: float, ci95: float) -> dict:
        return {"mean": mean, "ci95": ci95}
    others = {name: spreads(1.0, 0.1) for name in ("shape_spread", "ce_share", "centre_to_edge")}
    rows = [{"variant": "0.01", "seeds": 2, "collapsed": 0, "test_accuracy": spreads(0.9, 0.02),
             "test_recon_mse": spreads(0.0125, 0.001), **others, "probes": {}, "mlp_probes": {}},
            {"variant": "<post-hoc>", "seeds": 2, "collapsed": 1, "test_accuracy": spreads(0.8, 0.04),
             "test_recon_mse": spreads(0.05, 0.002), **others, "probes": {}, "mlp_probes": {}}]
    config = SweepRecord(**dataclasses.asdict(sweep.SweepConfig(seeds=(0, 1))))
    summary = SweepSummary(config=config, rows=rows, per_seed={}, pixel_probes={"left_digit": 0.5},
                           pixel_mlp_probes={}, judge=None)
    assert repr(summary) == "SweepSummary(2 rows: 0.01, <post-hoc>; 2 seeds)"
    page = summary._repr_html_()
    assert "<tr><th>lambda</th><th>seeds</th><th>test accuracy</th><th>test recon mse</th><th>shape spread</th>" in page
    assert "<tr><td>0.01</td><td>2</td><td>0.900 ± 0.020</td><td>0.0125 ± 0.0010</td><td>1.000 ± 0.100</td>" in page
    assert "<td>&lt;post-hoc&gt;</td>" in page and "<post-hoc>" not in page
    assert "<post-hoc> (1 of 2 seeds)" not in page and "&lt;post-hoc&gt; (1 of 2 seeds)" in page  # the collapse note
    assert "Linear probes on the raw pixels (reference): left_digit 0.500" in page
    # the Markdown table is made of the same cells
    assert "| 0.01 | 2 | 0.900 ± 0.020 | 0.0125 ± 0.0010 | 1.000 ± 0.100 |" in sweep_table(summary)
    assert Spread(mean=0.5, ci95=0.1).percent(2) == "50.0 % ± 10.0" and Spread(mean=0.5, ci95=0.1).percent(1) == "50.0 %"


@pytest.mark.slow  # trains and measures two sweeps: about 15 s alone
def test_an_adversarial_sweep_reports_each_members_robust_accuracy(tmp_path):
    from perceptreg import runs
    from perceptreg.core.config import AdversarialConfig

    config = sweep.SweepConfig(**{**ONE, "epochs": 1, "train_size": 100},
                               adversarial=AdversarialConfig(eps=0.3, method="fgsm-rs"))
    summary = sweep.run_sweep(config, tmp_path, progress=False).summary
    (member,) = summary.per_seed["0.01"]
    # the member's last epoch as it trained: PGD-10 at the training eps on 500 test digits
    assert member.test_robust_accuracy == runs.read_metrics(tmp_path / "lam0.01-seed0")[-1]["test_robust_accuracy"]
    assert summary.rows[0].test_robust_accuracy.mean == member.test_robust_accuracy
    header, cells, _ = sweep_cells(summary)
    column = header.index("robust accuracy (PGD-10, training eps)")
    assert cells[0][column] == f"{member.test_robust_accuracy:.3f}"
    assert read_sweep(tmp_path).rows[0].test_robust_accuracy.mean == member.test_robust_accuracy
    plain = sweep.run_sweep(sweep.SweepConfig(**{**ONE, "epochs": 1, "train_size": 100}), tmp_path / "plain",
                            progress=False).summary
    assert plain.rows[0].test_robust_accuracy is None and "robust accuracy" not in " ".join(sweep_cells(plain)[0])

import itertools

import pytest
import torch

from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.run_attacks import Strength, convergence, evaluate_run, split_test
from perceptreg.adversarial.summary import AttackSummary, Rate
from perceptreg.core.errors import PerceptregError
from perceptreg.data import ImageDataset


def ten_per_class():
    return ImageDataset(torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1), torch.arange(40) % 4,
                        ("a", "b", "c", "d"), "tiny")


def test_split_test_is_disjoint_and_spread_over_the_classes():
    data = ten_per_class()
    attacked, held = split_test(data, 8, 12)
    assert len(attacked) == 8 and len(held) == 12
    assert not set(attacked.images.flatten().tolist()) & set(held.images.flatten().tolist())
    assert torch.bincount(attacked.labels).tolist() == [2, 2, 2, 2] and torch.bincount(held.labels).tolist() == [3, 3, 3, 3]
    attacked, held = split_test(data)  # defaults: half attacked, the other half held out
    assert len(attacked) == len(held) == 20
    assert len(split_test(data, 30)[1]) == 10  # as many as attacked, at most the rest
    assert split_test(data, 40)[1] is None and split_test(data, 8, 0)[1] is None
    with pytest.raises(PerceptregError, match="`held_out` 13: with 30 images attacked, the test set of 40 leaves 10"):
        split_test(data, 30, 13)


def test_convergence_runs_each_value_with_the_rest_as_set():
    seen = []

    def measure(settings):
        seen.append((settings.eps, settings.steps))
        share, none = Rate.count(settings.steps, 100), Rate.count(0, 0)
        return AttackSummary(images=100, clean_accuracy=none, robust_accuracy=none, attack_success_rate=share,
                             successful_attacks=settings.steps, judges={}, detector=dict(
                                 score="s", auroc=0.5, clean_images=100, adversarial_images=settings.steps,
                                 mean_score_clean=0, mean_score_adversarial=0, at_fpr={"one-sided": [dict(
                                     fpr=0.05, low=None, high=1, false_positives=none,
                                     succeeded_and_undetected=Rate.count(settings.steps // 2, 100))]}))
    curves = convergence(measure, AttackSettings(eps=0.2, steps=10), eps_values=(0.1, 0.3), steps_values=(10, 40))
    assert seen == [(0.1, 10), (0.3, 10), (0.2, 10), (0.2, 40)]
    assert curves["steps"].values == [10, 40]
    assert [r.rate for r in curves["steps"].success] == [0.1, 0.4]
    assert [r.rate for r in curves["steps"].undetected["one-sided, 0.05"]] == [0.05, 0.2]


def test_a_curve_beyond_the_step_budget_is_refused_before_any_work():
    # run=None: any use of the run (loading its model) would be an AttributeError
    with pytest.raises(PerceptregError, match="`steps` must be in \\[0, 100,000\\], got 1000000000"):
        evaluate_run(None, AttackSettings(steps=2), strength=Strength(curve_steps=(10, 10**9)))


def test_attack_settings_refuse_a_budget_that_would_run_for_weeks():
    with pytest.raises(PerceptregError, match="`steps` must be in \\[0, 100,000\\], got 1000000000000"):
        AttackSettings(steps=10**12)
    with pytest.raises(PerceptregError, match="`restarts` must be in \\[1, 1,000\\], got 1000000000"):
        AttackSettings(restarts=10**9)


def module_of(stop: str) -> str:
    """"perceptreg.runs.run.TrainedRun.model" -> "perceptreg.runs.run"."""
    parts = stop.split(".")
    return ".".join(parts[:next((i for i, part in enumerate(parts) if part[:1].isupper()), len(parts) - 1)])


@pytest.mark.slow
def test_an_evaluation_walks_from_the_run_to_the_written_results_in_few_stops(trained_run, tmp_path):
    import shutil

    from helpers import route

    import perceptreg

    folder = tmp_path / "run"
    shutil.copytree(trained_run, folder)
    run = perceptreg.open_run(folder)
    stops = route(lambda: perceptreg.evaluate_attack(run, AttackSettings(steps=2), images=10), run, folder)
    # the command's call, the layer whose results file it checks before any work, the run's evaluation,
    # then only the run's own accessors (its model, data, layer) and the guarded reads of its files
    assert stops[:3] == ["perceptreg.attacking.evaluate.evaluate_attack", "perceptreg.runs.run.Run.output_layer",
                         "perceptreg.adversarial.run_attacks.evaluate_run"], stops
    assert all(stop.startswith(("perceptreg.runs.", "perceptreg.core.", "perceptreg.storage.")) for stop in stops[3:]), stops
    # issue 34's goal: at most 10 stays (a stay: consecutive stops in one module), and no back and
    # forth between two modules (A, B, A, B); a return to the run's accessors after its files is one A, B, A
    stays = [module for module, _ in itertools.groupby(map(module_of, stops))]
    assert len(stays) <= 10, stays
    assert not any(stays[i:i + 2] == stays[i + 2:i + 4] for i in range(len(stays) - 3)), stays
    assert (folder / "attack_metrics.json").exists() and (folder / "attack_roc.png").exists()


def test_the_search_aims_inside_every_detectors_band_and_keeps_the_plain_attacks_images():
    # the strongest attack of a search is the AdaptiveAttack aiming at the thresholds of the
    # held-out scores (issue 37, N21: given none, it aims at nothing and is weaker)
    from perceptreg.adversarial.adaptive import NO_BAND
    from perceptreg.adversarial.thresholds import strictest_band
    from perceptreg.core import models

    net, held = models.mnist(), torch.arange(100, dtype=torch.float32)
    plain = torch.rand(2, 1, 28, 28)
    strength = Strength(adaptive_search=(0.0, 1.0), fprs=(0.01, 0.05))
    search = strength.strongest(net, "pgd", None, held)(AttackSettings(eps=0.1, steps=1), (plain,))
    assert search.band == strictest_band(held, (0.01, 0.05)) == (2.0, 94.0)  # two-sided 5 %: low; one-sided 5 %: high
    assert search.betas == (0.0, 1.0) and search.losses == ("margin", "ce") and search.candidates == (plain,)
    assert strength.strongest(net, "pgd", None, None)(AttackSettings(eps=0.1, steps=1)).band == NO_BAND


def test_the_search_is_never_weaker_than_the_plain_attack(trained_run, monkeypatch):
    # a search whose own runs do nothing still fools every image the plain PGD fooled: it keeps
    # the plain attack's images where they rank better (issue 37: it fooled 2 fewer than PGD)
    import perceptreg
    from perceptreg.adversarial.adaptive import AdaptivePGD

    monkeypatch.setattr(AdaptivePGD, "forward", lambda self, images, labels, targets: images.clone())
    summary = evaluate_run(perceptreg.open_run(trained_run), AttackSettings(steps=3), images=20, held_out=20,
                           strength=Strength(adaptive_search=(0.0,))).summary
    assert summary.successful_attacks > 0
    assert summary.adaptive_search.successful_attacks == summary.successful_attacks


def test_a_bar_counts_every_attack_measured(trained_run, capsys):
    import perceptreg

    strength = Strength(adaptive=(0.0, 1.0), adaptive_search=(0.0,), curve_steps=(1, 2), curve_eps=(0.1,))
    assert strength.attacks() == 1 + 2 + 1 + 2 + 1
    evaluate_run(perceptreg.open_run(trained_run), AttackSettings(steps=1), images=8, held_out=8, strength=strength,
                 progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    counts = [line.split("|")[2].split()[0] for line in bar if line.startswith(f"attacks on {trained_run.name}:")]
    assert counts == [f"{done}/7" for done in range(8)], bar
    evaluate_run(perceptreg.open_run(trained_run), AttackSettings(steps=1), images=8, held_out=8)
    assert "attacks on" not in capsys.readouterr().err  # no bar unless asked



def test_the_bar_is_closed_when_an_attack_fails(trained_run, monkeypatch):
    import perceptreg
    from perceptreg.adversarial import run_attacks

    bars = []

    class Recorded(run_attacks.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    def fails(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the search: the bar must not stay drawn over the shell's prompt

    monkeypatch.setattr(run_attacks, "tqdm", Recorded)
    monkeypatch.setattr(Strength, "strongest", lambda *args: fails)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(perceptreg.open_run(trained_run), AttackSettings(steps=1), images=8, held_out=8,
                     strength=Strength(adaptive_search=(0.0,)), progress=True)
    assert len(bars) == 1 and bars[0].n == 1 and bars[0].disable  # the attack itself counted, then closed

def test_an_evaluation_refuses_a_judge_of_the_attacked_models_architecture(trained_run):
    import perceptreg

    run = perceptreg.open_run(trained_run)
    with pytest.raises(PerceptregError, match="cannot judge a model of its own architecture \\(mnist\\)"):
        evaluate_run(run, AttackSettings(steps=1), images=10, judge_runs=(run,))


def test_autoattack_by_name_is_the_ensemble_robust_accuracy_runs(trained_run):
    from perceptreg.adversarial.robust_accuracy import robust_accuracy
    from perceptreg.data import to_float
    from perceptreg.runs import open_run

    run = open_run(trained_run)
    settings = AttackSettings(eps=0.1, steps=2, seed=3)
    evaluation = evaluate_run(run, settings, images=10, held_out=0, attack="autoattack")
    # on the same 10 images (mnist5k's split is ordered by class: one or two of each), the numbers
    # of `robust-accuracy` at the same eps, steps and seed: one ensemble, reached by two names
    _, test = run.data()
    attacked, _ = split_test(test, 10, 0)
    alone = robust_accuracy(run.model("cpu"), to_float(attacked.images), attacked.labels, norm="linf", eps=0.1,
                            num_classes=10, seed=3, steps=2)
    assert evaluation.summary.robust_accuracy.model_dump() == alone.robust.model_dump()
    assert (evaluation.adversarial - to_float(attacked.images)).abs().max() <= 0.1 + 1e-6
    with pytest.raises(PerceptregError, match="autoattack takes the attack options"):
        evaluate_run(run, settings, images=10, held_out=0, attack="autoattack", attack_options={"version": "rand"})

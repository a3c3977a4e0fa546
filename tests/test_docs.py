"""Every code block of README.md and docs/**/*.md runs, as docs/reference/docs-that-run.md says:

- ```python blocks run top to bottom, one namespace per page (as a notebook would), in a fresh folder;
  one titled with a file name (`title="mynet.py"`) is also written to that file first;
- ```bash blocks run each `perceptreg ...` command through the CLI in that folder and expect exit 0;
  setup commands (pip, apt-get, pytest, playwright, mkdocs) are known and not run, any other fails;
- `<!-- docs-test: "A" -> "B" -->` just before a block replaces A by B for the test (small settings);
- a block titled `title="Not run: why"` is shown, not run (the title shows on the site);
- ```text blocks are program output.
"""

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\S*)(.*)$")
SUBSTITUTION = re.compile(r'<!-- docs-test: "(.*?)" -> "(.*?)" -->')
RUN_LANGUAGES = {"python", "bash"}
SHOWN_LANGUAGES = {"text", "yaml", "toml"}
SETUP = (("pip",), ("python", "-m", "pip"), ("python", "-m", "pytest"), ("python", "-m", "playwright"),
         ("apt-get",), ("sudo",), ("mkdocs",), ("git", "clone"), ("cd",))


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    title: str
    code: str
    substitutions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"

    def runnable_code(self) -> str:
        code = self.code
        for old, new in self.substitutions:
            assert old in code, f"{self.where}: the docs-test substitution {old!r} matches nothing in the block"
            code = code.replace(old, new)
        return code


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a page (at the start of a line), each with the substitutions above it."""
    found, pending, open_block = [], [], None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if open_block is not None:
            if line.strip() == "```":
                found.append(open_block)
                open_block = None
            else:
                open_block.code += line + "\n"
            continue
        fence = FENCE.match(line)
        if fence:
            title = re.search(r'title="([^"]*)"', fence.group(2))
            open_block = Block(page, number, fence.group(1), title.group(1) if title else "", "", pending)
            pending = []
        else:
            pending += SUBSTITUTION.findall(line)
    assert open_block is None, f"{page}: a code block is never closed"
    return found


def commands_of(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, `&&` split."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            argv = shlex.split(part, comments=True)
            if argv:
                commands.append(argv)
    return commands


def run_shell(block: Block) -> None:
    from perceptreg.cli import main

    for argv in commands_of(block.runnable_code()):
        if argv[0] == "perceptreg" or argv[:3] == ["python", "-m", "perceptreg"]:
            args = argv[1:] if argv[0] == "perceptreg" else argv[3:]
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, f"{block.where}: {shlex.join(argv)} ->\n{result.output}"
        else:
            assert any(tuple(argv[:len(setup)]) == setup for setup in SETUP), (
                f'{block.where}: `{shlex.join(argv)}` is neither a perceptreg nor a setup command; '
                f'title the block "Not run: why" if it cannot run here')


def run_page(page: Path) -> int:
    """Run every block of a page in the current folder; the number of blocks run."""
    namespace, ran = {"__name__": "__docs__"}, 0
    for block in blocks_of(page):
        if block.title.lower().startswith("not run") or block.language in SHOWN_LANGUAGES:
            continue
        assert block.language in RUN_LANGUAGES, f"{block.where}: a ```{block.language} block runs in no test"
        if block.language == "python":
            if block.title.endswith(".py"):
                Path(block.title).write_text(block.code)
            exec(compile(block.runnable_code(), block.where, "exec"), namespace)
        else:
            run_shell(block)
        ran += 1
    return ran


# the pages that train or attack for seconds (a sweep, CIFAR-10-shaped runs, AutoAttack's Square
# with its fixed 5,000 queries, a run trained then edited): the fast lane leaves them out
SLOW_PAGES = {ROOT / page for page in ("README.md", "docs/getting-started.md", "docs/guides/sweeps.md",
                                        "docs/guides/attacks.md", "docs/guides/attach.md",
                                        "docs/guides/train-and-perceive.md", "docs/guides/adversarial-training.md",
                                        "docs/guides/latent-edits.md", "docs/numbers/cifar10.md",
                                        "docs/numbers/resnet-cifar10.md")}


@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p for p in PAGES],
                         ids=lambda page: str(page.relative_to(ROOT)))
def test_every_block_of_the_page_runs(page, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    run_page(page)


def test_a_broken_block_fails(tmp_path, monkeypatch):
    """The runner is no rubber stamp: a failing command, a failing line of Python, an unknown
    command and a substitution that matches nothing each fail."""
    monkeypatch.chdir(tmp_path)
    for text in ['```bash\nperceptreg train --epochs -1\n```\n', '```python\nassert 1 == 2\n```\n',
                 '```bash\nrm -rf runs\n```\n', '<!-- docs-test: "--epochs 20" -> "--epochs 1" -->\n'
                 '```bash\nperceptreg --help\n```\n', '```javascript\nx = 1\n```\n']:
        page = tmp_path / "page.md"
        page.write_text(text)
        with pytest.raises(AssertionError):
            run_page(page)
    page.write_text('Shown only:\n```bash title="Not run: needs a cluster"\nray start --head\n```\n'
                    '<!-- docs-test: "--epochs 20" -> "--epochs 1" -->\n```bash\nperceptreg --help\n```\n')
    with pytest.raises(AssertionError, match="matches nothing"):
        run_page(page)
    page.write_text('```bash title="Not run: needs a cluster"\nray start --head\n```\n```bash\nperceptreg --help\n```\n')
    assert run_page(page) == 1


def test_the_readme_links_to_files_that_exist():
    """mkdocs --strict checks the links of docs/; the README lives outside it."""
    text = (ROOT / "README.md").read_text()
    targets = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)
               if not target.startswith(("http://", "https://", "#"))]
    assert len(targets) > 20
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_the_readme_stays_a_front_page():
    """At most 250 lines (issue 39), opening with its two commands: set up and run the demo, run the tests."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    commands = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert "perceptreg demo" in commands[0] and "python -m pytest" in commands[1]


def test_a_block_named_for_an_example_file_is_that_file():
    """A page that shows a file of examples/ (a block titled `cifar_resnet.py`) shows it as it is:
    the block runs in the test, the file is what users copy, and neither drifts from the other."""
    shown = [(block, ROOT / "examples" / block.title) for page in PAGES for block in blocks_of(page)
             if block.title.endswith(".py") and (ROOT / "examples" / block.title).exists()]
    assert shown, "no page shows a file of examples/"
    for block, file in shown:
        assert block.code == file.read_text(), f"{block.where} differs from {file.relative_to(ROOT)}"

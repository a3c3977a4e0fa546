"""The replay of issue 38, turned into tables: every command's outputs follow one rule
(`runs.outputs`), a kill in the first checkpoint restarts, and each case that gave a traceback
or was silently accepted is one `Error:` line naming the parameter or file."""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner
from helpers import USER_NET, metrics_lines

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.sweeps.config import SweepConfig
from perceptreg.sweeps.summary import check_rerun


def run_cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error(result, named: str):
    """Exit 1, one `Error:` line naming ``named``, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output, result.output
    assert named in result.output, result.output


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    """A copy of the session's trained run (2 epochs), that these tests may try to damage."""
    copy = tmp_path_factory.mktemp("outputs") / "run"
    shutil.copytree(trained_run, copy)
    return copy


# --- 1. an output is never a file of the run it reads -----------------------------------------
OUTPUT_OPTIONS = {
    "perceive --out": lambda run, path: ["perceive", run, "--n", "2", "--out", path],
    "report --out": lambda run, path: ["report", run, "--out", path],
    "attack --out": lambda run, path: ["attack", run, "--steps", "1", "--pool", "2", "--out", path],
    "attack --from-noise --out": lambda run, path: ["attack", run, "--from-noise", "--steps", "1", "--n", "1",
                                                    "--out", path],
    "interpolate --save-direction": lambda run, path: ["interpolate", run, "--target", "1", "--save-direction", path],
    "invert --out": lambda run, path: ["invert", run, "--n", "2", "--steps", "1", "--out", path],
}
RUN_FILES = (runs.CONFIG, runs.STATE_META, runs.MODEL, runs.MODEL_META, "state-000002.safetensors", runs.METRICS,
             ".lock")


@pytest.mark.parametrize("name", RUN_FILES)
@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
def test_no_output_replaces_a_file_of_the_run(run_copy, option, name):
    before = snapshot(run_copy)
    one_error(run_cli(OUTPUT_OPTIONS[option](run_copy, run_copy / name)), str(run_copy))
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("path, named", [("/x.png", "/x.png"), ("/etc/perception.png", "/etc"),
                                         ("/usr/local/perception.png", "/usr")])
def test_no_output_goes_among_the_system_folders(run_copy, path, named):
    one_error(run_cli(["perceive", run_copy, "--n", "2", "--out", path]), named)


def test_an_output_file_is_never_a_file_the_command_reads(tmp_path):
    direction = tmp_path / "d.safetensors"
    direction.write_bytes(b"x")
    with pytest.raises(PerceptregError, match="reads"):
        runs.check_output_file(direction, reads=(direction,))


def test_a_figure_goes_only_into_the_run_it_is_about_and_replaces_only_its_own(run_copy, attach_run, tmp_path):
    owned = (runs.PERCEPTION,)
    assert runs.check_output_file(run_copy / runs.PERCEPTION, owned=owned, run=run_copy)  # written again
    assert runs.check_output_file(run_copy / "mine.png", owned=owned, run=run_copy)  # a new name of the user's
    assert runs.check_output_file(tmp_path / "mine.png", owned=owned, run=run_copy)  # outside any run
    (run_copy / "report.html").write_text("the report")  # another command's figure in the same run
    for path in (run_copy / "report.html", attach_run / "mine.png", attach_run / runs.PERCEPTION):
        with pytest.raises(PerceptregError, match=str(path.parent)):
            runs.check_output_file(path, owned=owned, run=run_copy, reads=(attach_run,))  # a judge's run: read only
    with pytest.raises(PerceptregError, match="source"):  # the copy of the model's source
        runs.check_output_file(attach_run / "source" / "user_net.py", run=attach_run)


def test_perceive_never_replaces_another_runs_figure(run_copy, attach_run):
    before = snapshot(attach_run)
    for out in (attach_run / "layers.png", attach_run / "new.png"):
        one_error(run_cli(["perceive", run_copy, "--n", "2", "--out", out]), str(attach_run))
    assert snapshot(attach_run) == before


@pytest.mark.parametrize("out, named", [("/", "/"), ("ATTACH", "attach")])
def test_interpolate_writes_its_outputs_only_into_a_folder_of_its_own(run_copy, attach_run, out, named):
    out = attach_run if out == "ATTACH" else out
    one_error(run_cli(["interpolate", run_copy, "--target", "1", "--out", out]), named)


# --- 2. a run folder is made only where it is missing, empty, or holds a run of the same kind ---
@pytest.mark.parametrize("out, named", [("/", "/"), ("/etc", "/etc"), ("/usr/local/run", "/usr")])
def test_train_refuses_the_system_folders(out, named):
    one_error(run_cli(["train", "--epochs", "1", "--out", out, "--quiet"]), named)


@pytest.mark.parametrize("files", [{runs.CONFIG: '{"name": "my other project"}'}, {"notes.txt": "mine"}])
@pytest.mark.parametrize("resume", [False, True])
def test_train_refuses_a_folder_of_someone_elses_files(tmp_path, files, resume):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_cli(["train", "--epochs", "1", "--out", tmp_path, "--quiet", *(["--resume"] if resume else [])])
    one_error(result, next(iter(files)))
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == files


def test_the_current_folder_takes_a_run_only_when_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PerceptregError, match="notes.txt"):
        runs.check_writable(Path("."), "trained")
    (tmp_path / "notes.txt").unlink()
    runs.check_writable(Path("."), "trained")


def test_train_judge_refuses_an_ordinary_run(run_copy):
    from perceptreg.views.train_run import train_judge

    with pytest.raises(PerceptregError, match="arch 'mnist'"):
        train_judge("mnist5k", run_copy, progress=False)


# --- 3. a sweep rerun with other lambdas, seeds or epochs says so -------------------------------
@pytest.mark.parametrize("changed, refused", [({}, False), ({"lams": (1e-3,)}, True), ({"epochs": 3}, True),
                                              ({"seeds": (0, 1)}, True), ({"post_hoc": True}, True),
                                              ({"device": "cpu", "workers": 2}, False)])
@pytest.mark.parametrize("extend", [False, True])
def test_a_sweep_rerun_changes_its_grid_only_with_extend(tmp_path, changed, refused, extend):
    first = SweepConfig(lams=(1e-2,), seeds=(0,), epochs=1, post_hoc=False, workers=1)
    (tmp_path / runs.SWEEP_CONFIG).write_text(json.dumps(dataclasses.asdict(first)))
    again = SweepConfig(**{**first.__dict__, **changed})
    if refused and not extend:
        with pytest.raises(PerceptregError, match=f"{next(iter(changed))} .*`extend`"):
            check_rerun(tmp_path, again, extend)
    else:
        check_rerun(tmp_path, again, extend)


@pytest.mark.parametrize("damage, named", [(lambda saved: saved.pop("lams"), "lams"),
                                           (lambda saved: saved.update(lamz=[1.0]), "lamz"),
                                           (lambda saved: saved.update(epochs="many"), "epochs")])
def test_a_sweeps_settings_out_of_their_schema_are_named_on_rerun(tmp_path, damage, named):
    config = SweepConfig(lams=(1e-2,), seeds=(0,), epochs=1, post_hoc=False, workers=1)
    saved = dataclasses.asdict(config)
    damage(saved)
    (tmp_path / runs.SWEEP_CONFIG).write_text(json.dumps(saved))
    with pytest.raises(PerceptregError, match=f"{runs.SWEEP_CONFIG}.*{named}"):
        check_rerun(tmp_path, config, extend=False)


def test_sweep_has_the_flag_that_extends_a_sweep():
    result = run_cli(["sweep", "--help"])
    assert "--extend" in result.output


# --- 4. a kill in the first checkpoint: resumed and restarted ----------------------------------
KILLED = {"state-000001.safetensors": b"x"}, {"state-000001.safetensors": b"x", "model-000001.safetensors": b"x"}


@pytest.mark.parametrize("left", KILLED)
@pytest.mark.parametrize("resume", [False, True])
def test_a_run_killed_in_its_first_checkpoint_is_taken_again(tmp_path, left, resume):
    from perceptreg.training.launch import launch

    config = TrainConfig(train_size=300, epochs=1)
    (tmp_path / runs.CONFIG).write_text(json.dumps(config.to_dict()))
    (tmp_path / runs.METRICS).write_text(metrics_lines(1))
    for name, content in left.items():
        (tmp_path / name).write_bytes(content)
    runs.check_writable_for_training(tmp_path, config, resume)  # by train, and by a sweep's member
    assert launch({"train_size": 300, "epochs": 1}, tmp_path, resume=resume).config.train_size == 300


STRACE_KILL = ["strace", "-f", "-o", os.devnull, "-e", "trace=rename,renameat,renameat2,link,linkat,unlink,unlinkat",
               "-e", "inject=rename,renameat,renameat2,link,linkat,unlink,unlinkat:signal=KILL:when={}"]
SMALL = ["--train-size", "200", "--batch-size", "50", "--eval-size", "100", "--epochs", "1", "--quiet"]


def first_checkpoint_calls(command: list[str], trace: Path) -> list[int]:
    """The values of strace's ``inject ... when=N`` that kill a run inside its first checkpoint
    (after config.json, before state.json commits it). strace counts each syscall's calls in
    each process apart, and kills at the first call to reach N: found by tracing a run, not
    assumed, since the counts move with what else the process renames or unlinks."""
    subprocess.run(["strace", "-f", "-o", str(trace), *STRACE_KILL[4:6], *command], check=True, capture_output=True,
                   timeout=600)
    lines = trace.read_text().splitlines()
    main_pid = lines[0].split()[0]
    calls = [(found[1], line) for line in lines if line.split()[0] == main_pid and "resumed>" not in line
             and (found := re.search(r"\b(rename|renameat2?|link|linkat|unlink|unlinkat)\(", line))]
    config = next(i for i, (_, line) in enumerate(calls) if line.rstrip().endswith("= 0") and 'config.json")' in line)
    state = next(i for i, (_, line) in enumerate(calls) if 'state.json")' in line and i > config)
    counts, first_hit = Counter(), {}
    for i, (name, _) in enumerate(calls):
        counts[name] += 1
        first_hit.setdefault(counts[name], i)  # when=N kills at the first call of any name to reach N
    return sorted(n for n, i in first_hit.items() if config < i < state)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("again", [[], ["--resume"]])
def test_a_real_kill_in_the_first_checkpoint_resumes_and_restarts(tmp_path, again):
    command = [sys.executable, "-m", "perceptreg", "train", *SMALL, "--out"]
    calls = first_checkpoint_calls(command + [str(tmp_path / "traced")], tmp_path / "trace")
    assert len(calls) >= 2, calls  # the state file's and the model file's writes
    for when in (calls[0], calls[-1]):
        out = tmp_path / f"run-{when}"
        strace = [part.format(when) for part in STRACE_KILL]
        killed = subprocess.run(strace + command + [str(out)], capture_output=True, text=True, timeout=600)
        assert killed.returncode != 0 and not (out / runs.STATE_META).exists()  # killed inside its first checkpoint
        rerun = subprocess.run(command + [str(out)] + again, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert runs.completed_epochs(out) == 1 and len(runs.open_run(out).metrics) == 1


# --- 5. Ctrl-C during attach ---------------------------------------------------------------------
def _interruptible():
    """Ctrl-C's default action in the child: a suite run as a background job (``cmd &`` in a
    script) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_attach_exits_130_with_one_line(tmp_path):
    child = subprocess.Popen([sys.executable, "-m", "perceptreg", "attach", "--model", f"{USER_NET}:build",
                              "--random-weights", "--layers", "fc1", "--epochs", "50", "--out", str(tmp_path / "a")],
                             stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)
    seen = ""
    while "fitting decoders" not in seen:  # the work has begun
        seen += child.stderr.read(1)
    time.sleep(1)
    child.send_signal(signal.SIGINT)
    rest = child.stderr.read()
    assert child.wait(timeout=60) == 130
    assert rest.count("Error: interrupted") == 1 and "Traceback" not in rest and "--out" in rest, rest


class _InterruptedImport:
    """A meta-path finder that answers the import of ``name`` with a Ctrl-C."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise KeyboardInterrupt


def test_ctrl_c_while_the_commands_import_is_one_line_and_130(monkeypatch, capsys):
    from perceptreg import cli

    monkeypatch.delitem(sys.modules, "perceptreg.cli.commands", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport("perceptreg.cli.commands"), *sys.meta_path])
    with pytest.raises(SystemExit) as stop:
        cli.run()
    assert stop.value.code == 130 and capsys.readouterr().err == "Error: interrupted\n"


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.0])
def test_a_real_ctrl_c_during_startup_is_never_a_traceback(delay):
    # from the moment the console script calls run(): before it, a Ctrl-C falls in Python's own
    # start-up or in the import of three small modules (perceptreg, core.lazy, cli), which no code can catch
    # "started" is written once run() looks for the commands inside its guard (a finder that only
    # watches): written before run() was called, a loaded machine could deliver the signal outside it
    start = ("import sys\n"
             "class Watch:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'perceptreg.cli.commands':\n"
             "            sys.stderr.write('started\\n'); sys.stderr.flush()\n"
             "sys.meta_path.insert(0, Watch())\n"
             "from perceptreg.cli import run; run()")
    child = subprocess.Popen([sys.executable, "-c", start, "train", "--help"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)
    assert child.stderr.readline() == "started\n"
    time.sleep(delay)  # somewhere in the imports, or after them: both answer in one line
    child.send_signal(signal.SIGINT)
    error = child.stderr.read()
    # -SIGINT: the signal came as the interpreter was finishing, its default handler back (a shell says 130 too)
    assert child.wait(timeout=60) in (0, 130, -signal.SIGINT) and "Traceback" not in error, error


# --- 8, 9. what gave a traceback -------------------------------------------------------------------
def test_every_seed_of_the_documented_range_shuffles():
    from perceptreg.training.train import epoch_shuffle

    for seed in (0, 2**63 - 1):
        epoch_shuffle(TrainConfig(seed=seed), 1)
    small = epoch_shuffle(TrainConfig(seed=7), 3).initial_seed()
    assert small == 7 * 100_003 + 3  # the seeds that never wrapped keep their batch order


def test_classifier_from_an_attach_run_is_refused(attach_run):
    one_error(run_cli(["train", "--classifier-from", attach_run, "--out", attach_run.parent / "cf", "--quiet"]),
              "--classifier-from")


def test_evaluate_attack_refuses_a_run_compared_with_itself(run_copy):
    before = snapshot(run_copy)
    one_error(run_cli(["evaluate-attack", run_copy, "--compare", f"{run_copy}/.", "--steps", "1"]), "--compare")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("metrics", [None, b"", b'{"epoch": 1, "te'])
def test_the_report_of_an_attach_run_without_its_metrics(attach_run, tmp_path, metrics):
    """Missing, empty or cut, metrics.jsonl differs from the digest model.json records: one
    error naming it (a traceback before issue 38), and no report written."""
    from perceptreg.views.report import write_report

    copy = tmp_path / "attach"
    shutil.copytree(attach_run, copy)
    (copy / runs.METRICS).unlink()
    if metrics is not None:
        (copy / runs.METRICS).write_bytes(metrics)
    with pytest.raises(PerceptregError, match=re.escape(str(copy / runs.METRICS))):
        write_report(copy)
    assert not (copy / runs.REPORT).exists()


def test_a_metrics_file_that_loops_is_refused_on_resume(run_copy, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_copy, copy)
    (copy / runs.METRICS).unlink()
    (copy / runs.METRICS).symlink_to(runs.METRICS)
    one_error(run_cli(["train", "--resume", "--epochs", "3", "--out", copy, "--quiet"]), runs.METRICS)


@pytest.mark.parametrize("command", [["train", "--quiet", "--out"], ["report", "RUN", "--out"]])
def test_an_output_path_longer_than_path_max(run_copy, command):
    long = "/tmp/" + "/".join(["a" * 200] * 21)
    one_error(run_cli([run_copy if part == "RUN" else part for part in command] + [long]), "4095 bytes")


def test_a_folder_that_vanishes_during_the_scan(tmp_path):
    from perceptreg.data import images

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    real = Path.iterdir

    def vanishing(folder):
        if folder.name == "b":
            raise FileNotFoundError(2, "No such file or directory", str(folder))
        return real(folder)
    with mock.patch.object(Path, "iterdir", vanishing), pytest.raises(PerceptregError, match="cannot be listed"):
        images.image_folder_shape(tmp_path)


# --- 16. options that contradict each other --------------------------------------------------------
CONTRADICTIONS = [
    (["attach", "--model", f"{USER_NET}:build", "--weights", "RUN/model.safetensors", "--random-weights",
      "--layers", "fc1", "--out", "OUT"], "--random-weights"),
    (["attach", "--model", f"{USER_NET}:build", "--random-weights", "--layers", "fc1,fc1", "--out", "OUT"],
     "--layers"),
    (["evaluate-attack", "RUN", "--curve-steps", "0"], "--curve-steps"),
    (["evaluate-attack", "RUN", "--curve-steps", "10,10"], "--curve-steps"),
    (["evaluate-attack", "RUN", "--adaptive", ""], "--adaptive"),
    (["evaluate-attack", "RUN", "--curve-eps", ""], "--curve-eps"),
    (["evaluate-attack", "RUN", "--fpr", "0.5,0.5"], "--fpr"),
    (["interpolate", "RUN", "--source", "1", "--target", "1"], "--source"),
    (["explore", "RUN", "--host", ""], "--host"),
]


@pytest.mark.parametrize("args, named", CONTRADICTIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CONTRADICTIONS])
def test_options_that_contradict_each_other_are_refused(run_copy, tmp_path, args, named):
    before = snapshot(run_copy)
    args = [a.replace("RUN", str(run_copy)).replace("OUT", str(tmp_path / "out")) for a in args]
    one_error(run_cli(args), named)
    assert snapshot(run_copy) == before and not (tmp_path / "out").exists()


# --- the replay's unclear lines: each names what the user gave -----------------------------------
def test_a_class_outside_the_model_names_source(trained_run, tmp_path):
    for source in ("-1", str(2**70)):
        one_error(run_cli(["interpolate", trained_run, "--target", "3", "--source", source, "--out", tmp_path / "e"]),
                  "--source")


def test_a_direction_over_a_run_file_names_the_path_given(trained_run):
    given = Path(trained_run) / "config.json"
    one_error(run_cli(["interpolate", trained_run, "--target", "3", "--save-direction", given]),
              f"--save-direction {given} is written as config.safetensors")


def test_the_current_folder_with_other_files_names_out(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    one_error(run_cli(["train", "--train-size", "100", "--epochs", "1", "--quiet", "--out", "."]), "--out . holds files")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_results_file_that_links_to_itself_is_named_not_taken_for_absent(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    metrics = run / runs.ATTACK_METRICS
    metrics.unlink(missing_ok=True)
    metrics.symlink_to(metrics.name)
    one_error(run_cli(["report", run]), str(metrics))


@pytest.mark.parametrize("make", [lambda path: path.mkdir(), lambda path: os.mkfifo(path)])
def test_evaluate_attack_refuses_an_unwritable_results_file_before_it_attacks(trained_run, tmp_path, make):
    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / runs.ATTACK_METRICS).unlink(missing_ok=True)
    (run / runs.ATTACK_ROC).unlink(missing_ok=True)
    make(run / runs.ATTACK_METRICS)
    one_error(run_cli(["evaluate-attack", run, "--images", "10", "--held-out", "10", "--steps", "1"]),
              str(run / runs.ATTACK_METRICS))
    assert not (run / runs.ATTACK_ROC).exists()  # refused before the attack, whose first figure it is

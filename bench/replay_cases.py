"""The cases of the hostile user's replay (``replay.py``), by area:

- runs: every file of a trained and of an attached run, corrupted every way we know, read by
  every command that reads runs (the explorer through its app);
- values: bad values of every option, and the contradictory options of issue 38;
- outputs: output paths that would overwrite a run's files or a folder of someone else's;
- datasets: image folders and CIFAR-10 batches that are not what they say.

A case's ``args`` may name ``{work}``, the case's own copy of the fixtures (its working folder).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
USER_NET = str(REPO / "tests" / "user_net.py")
# files the commands write into a run on purpose (beside .png and .html): never counted as lost
OUTPUT_NAMES = {"attack_metrics.json", "noise_metrics.json", "interpolation_metrics.json", "report.html"}


@dataclass(frozen=True)
class Case:
    area: str
    name: str
    args: tuple[str, ...]
    expect: str  # "refuse", "accept", or "either" (a changed value that may lie in its field's range)
    names: tuple[str, ...] = ()  # what a clear Error line names (any one of them)
    prepare: Callable[[Path], None] = lambda work: None
    timeout: float = 300.0
    owns: str | None = None  # the run the command owns (train --resume): it may rewrite it, never lose work


def cli(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "perceptreg", *args], check=True, cwd=cwd, stdout=subprocess.DEVNULL)


def make_fixtures(root: Path) -> Path:
    """Small real runs (made once, reused): a trained run with its attack results, an attach
    run, and a 1-model sweep."""
    if (root / "done").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    small = ("--train-size", "200", "--epochs", "1", "--quiet")
    cli("train", *small, "--out", str(root / "trained"))
    cli("evaluate-attack", str(root / "trained"), "--images", "10", "--held-out", "10", "--steps", "1")
    cli("attach", "--model", f"{USER_NET}:build", "--random-weights", "--layers", "stem,fc1", *small,
        "--eval-size", "100", "--attack-images", "10", "--steps", "1", "--out", str(root / "attached"))
    cli("sweep", "--lams", "0.01", "--seeds", "1", "--epochs", "1", "--train-size", "100", "--no-post-hoc",
        "--out", str(root / "sweep"))
    (root / "done").write_text("")
    return root


# ---- corruptions: (name, function of the file's path) ------------------------------------------

def _write(data: bytes):
    return lambda path: path.write_bytes(data)


def _unlink(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


COMMON = [("missing", _unlink), ("empty", _write(b"")), ("truncated", _truncate), ("random bytes", _write(os.urandom(64))),
          ("a folder", _folder), ("a FIFO", _fifo), ("a self-looping symlink", _loop), ("a symlink to /dev/zero", _dev_zero)]


def _resealed(change: Callable[[dict], None]):
    """Edit the JSON and seal it again as our writer would: only the schema can refuse it."""
    def corrupt(path: Path) -> None:
        from perceptreg.storage.schema import sealed

        values = json.loads(path.read_text())
        had_seal = "checksum" in values
        values.pop("checksum", None)
        change(values)
        path.write_text(json.dumps(sealed(values) if had_seal else values))
    return corrupt


def _first_number(values, new):
    """Set the first number found (depth first; not a digest) to ``new``."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    for key, value in items:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = new
            return True
        if isinstance(value, (dict, list)) and _first_number(value, new):
            return True
    return False


def _drop_first_key(values: dict) -> None:
    values.pop(next(iter(values)))


JSON = COMMON + [
    ("NUL bytes", _write(b"\0" * 64)), ("[ nested 100,000 deep", _write(b"[" * 100_000)),
    ("a 5,000-digit integer", _write(b'{"epoch": ' + b"7" * 5000 + b"}")), ("a list, not an object", _write(b"[]")),
    ("an empty object", _write(b"{}")),
    ("an unknown key, not resealed", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "surprise": 1}))),
    ("an unknown key, resealed", _resealed(lambda v: v.update(surprise=1))),
    ("a key removed, resealed", _resealed(_drop_first_key)),
    ("a number made 1e30, resealed", _resealed(lambda v: _first_number(v, 1e30))),
    ("a number made -1, resealed", _resealed(lambda v: _first_number(v, -1))),
    ("a number made a string, resealed", _resealed(lambda v: _first_number(v, "2"))),
]
JSON_LINES = COMMON + [
    ("the last line dropped", lambda p: p.write_text("".join(p.read_text().splitlines(True)[:-1]))),
    ("the final newline cut", lambda p: p.write_text(p.read_text().rstrip("\n"))),
    ("a digit changed", lambda p: p.write_text(p.read_text().replace("0.", "9.", 1))),
    ("a garbage line", lambda p: p.write_text(p.read_text() + "not json\n")),
    ("a line nested 100,000 deep", lambda p: p.write_text(p.read_text() + "[" * 100_000 + "\n")),
    ("a 5,000-digit integer", lambda p: p.write_text(p.read_text() + '{"epoch": ' + "7" * 5000 + "}\n")),
]
TENSORS = COMMON + [
    ("a flipped byte", lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 0xFF]))),
    ("a header claiming 2^62 bytes", lambda p: p.write_bytes(struct.pack("<Q", 2**62) + p.read_bytes()[8:])),
]
FORMATS = {".json": JSON, ".jsonl": JSON_LINES, ".safetensors": TENSORS}

TRAINED_READERS = {
    "perceive": ("perceive", "{run}", "--n", "4"),
    "report": ("report", "{run}"),
    "attack": ("attack", "{run}", "--n", "2", "--pool", "20", "--steps", "1"),
    "evaluate-attack": ("evaluate-attack", "{run}", "--images", "10", "--held-out", "10", "--steps", "1"),
    "interpolate": ("interpolate", "{run}", "--target", "3", "--images", "2", "--fit-images", "100", "--steps", "1",
                    "--alphas", "0,1"),
    "train --resume": ("train", "--resume", "--out", "{run}", "--train-size", "200", "--epochs", "1", "--quiet"),
    "explore": ("@explore", "{run}"),
}
ATTACHED_READERS = {name: TRAINED_READERS[name] for name in ("perceive", "report", "attack", "evaluate-attack", "explore")}
# A trained run's model.json is the published copy of what state.json's manifest records: the
# commands read the manifest (model.json only in runs older than it), and train --resume rewrites it.
EVERY_READER_READS = {"trained": ("config.json", "state.json", "metrics.jsonl", "model-000001.safetensors"),
                      "attached": ("config.json", "model.json", "metrics.jsonl", "model.safetensors")}
ALSO_READS = {"train --resume": ("state-000001.safetensors",), "report": ("attack_metrics.json", "layers.json")}
OPTIONAL = ("attack_metrics.json", "layers.json")  # results a reader shows where they were made
NOT_READ = {"report": ("model-000001.safetensors", "model.safetensors")}  # the report loads no weights
# what a reader writes over: it may rewrite the damaged file, or refuse one it cannot write over
REWRITES = {"train --resume": ("model.json", "model.safetensors"), "evaluate-attack": ("attack_metrics.json",)}
# Damage a reader may accept: the value may lie inside its field's range (a resealed file is a
# valid file), a JSON number written as a string is read as the number (pydantic's lax mode),
# a cut final newline leaves every row whole, and without state.json a run is read from its
# published model (model.json), as runs older than the manifest are.
EITHER = ("a number made 1e30, resealed", "a number made a string, resealed", "a key removed, resealed")
HARMLESS = ("the final newline cut",)


def expectation(kind: str, file: str, corruption: str, reader: str) -> str:
    """What a reader must do with ``file`` of a ``kind`` run damaged by ``corruption``."""
    reads = (file in EVERY_READER_READS[kind] or file in ALSO_READS.get(reader, ())) and file not in NOT_READ.get(reader, ())
    if file in REWRITES.get(reader, ()):
        return "either"
    if not reads or corruption in HARMLESS:
        return "accept"
    if corruption == "missing" and (file in OPTIONAL or (file == "state.json" and reader != "train --resume")):
        return "accept"
    return "either" if corruption in EITHER else "refuse"


def run_cases(fixtures: Path) -> list[Case]:
    cases = []
    for kind, readers in (("trained", TRAINED_READERS), ("attached", ATTACHED_READERS)):
        for file in sorted(p.name for p in (fixtures / kind).iterdir() if p.suffix in FORMATS):
            for corruption, corrupt in FORMATS[Path(file).suffix]:
                for reader, args in readers.items():
                    cases.append(Case(
                        "runs", f"{kind} {file}: {corruption}; {reader}",
                        tuple(a.format(run=f"{{work}}/{kind}") if "{run}" in a else a for a in args),
                        expectation(kind, file, corruption, reader), (file,),
                        lambda work, kind=kind, file=file, corrupt=corrupt: corrupt(work / kind / file),
                        owns=kind if reader == "train --resume" else None))
    return cases


BAD_INTS = ("-1", "abc", "", "1.5", str(2**70))
BAD_FLOATS = ("nan", "inf", "-1", "abc", "", "1e400")
SMALL = {"train": ("train", "--train-size", "100", "--epochs", "1", "--quiet", "--out", "{work}/new"),
         "attach": ("attach", "--model", f"{USER_NET}:build", "--random-weights", "--layers", "fc1", "--train-size",
                    "100", "--epochs", "1", "--eval-size", "50", "--attack-images", "5", "--steps", "1", "--quiet",
                    "--out", "{work}/new"),
         "attack": ("attack", "{work}/trained", "--n", "2", "--pool", "20", "--steps", "1"),
         "evaluate-attack": ("evaluate-attack", "{work}/trained", "--images", "10", "--held-out", "10", "--steps", "1"),
         "perceive": ("perceive", "{work}/trained", "--n", "4"),
         "interpolate": TRAINED_READERS["interpolate"][:1] + ("{work}/trained",) + TRAINED_READERS["interpolate"][2:],
         "sweep": ("sweep", "--lams", "0.01", "--seeds", "1", "--epochs", "1", "--train-size", "100", "--no-post-hoc",
                   "--out", "{work}/newsweep"),
         "train-judge": ("train-judge", "--dataset", "mnist-strips", "--epochs", "1", "--train-size", "100", "--quiet",
                         "--out", "{work}/judge")}
OPTIONS = {  # command: (integer options, float options)
    "train": (("--epochs", "--batch-size", "--z-dim", "--decoder-width", "--train-size", "--seed", "--decoder-epochs"),
              ("--lam", "--lr")),
    "attach": (("--epochs", "--batch-size", "--seed", "--train-size", "--eval-size", "--decoder-params", "--steps",
                "--attack-images"), ("--lam", "--lr", "--eps", "--alpha")),
    "attack": (("--steps", "--seed", "--restarts", "--n", "--pool", "--target"), ("--eps", "--alpha")),
    "evaluate-attack": (("--steps", "--images", "--held-out", "--target", "--restarts"), ("--eps", "--alpha")),
    "perceive": (("--n", "--read-size"), ()),
    "interpolate": (("--target", "--source", "--images", "--fit-images"), ("--eps",)),
    "sweep": (("--epochs", "--train-size", "--workers"), ()),
    "train-judge": (("--epochs", "--train-size"), ()),
}
LISTS = {  # list options: values no list may hold
    ("evaluate-attack", "--fpr"): ("", "0.5,0.5", "0", "1", "nan", "a,b"),
    ("evaluate-attack", "--adaptive"): ("", "nan", "-1", "a"),
    ("evaluate-attack", "--adaptive-search"): ("", "nan", "-1"),
    ("evaluate-attack", "--curve-eps"): ("", "0", "-1", "nan"),
    ("evaluate-attack", "--curve-steps"): ("", "0", "-1", "1.5"),
    ("interpolate", "--alphas"): ("", "1:0:1", "0:1:0", "nan", "a"),
    ("sweep", "--lams"): ("", "-1", "nan", "a", "0.1,0.1"),
    ("sweep", "--seeds"): ("", "-1", "a", "1,1"),
    ("attach", "--layers"): ("", "fc1,fc1", "nosuch", ","),
    ("attach", "--input-shape"): ("", "1,28", "0,28,28", "1,100000,100000", "a,b,c"),
    ("attach", "--normalize"): ("", "0.5", "0.5,0", "a,b", "nan,1"),
}
CONTRADICTIONS = [
    ("attach", ("--weights", "{work}/trained/model-000001.safetensors"), "--weights"),
    ("interpolate", ("--source", "3"), "--source"),  # the same class as --target 3
]


def value_cases() -> list[Case]:
    cases = []
    for command, (ints, floats) in OPTIONS.items():
        for option, values in [(o, BAD_INTS) for o in ints] + [(o, BAD_FLOATS) for o in floats]:
            for value in values:
                cases.append(Case("values", f"{command} {option} {value!r}", (*SMALL[command], option, value), "refuse",
                                  (option, option.strip("-").replace("-", "_"))))
    for (command, option), values in LISTS.items():
        cases += [Case("values", f"{command} {option} {value!r}", (*SMALL[command], option, value), "refuse",
                       (option, option.strip("-").replace("-", "_"))) for value in values]
    cases += [Case("values", f"{command} {' '.join(extra)}", (*SMALL[command], *extra), "refuse", (named,))
              for command, extra, named in CONTRADICTIONS]
    cases.append(Case("values", "explore --host ''", ("explore", "{work}/trained", "--host", ""), "refuse", ("--host",),
                      timeout=60))
    return cases


RUN_FILES = ("config.json", "state.json", "model.json", "metrics.jsonl", "model-000001.safetensors",
             "state-000001.safetensors")


def output_cases() -> list[Case]:
    cases = []
    writers = {"perceive --out": ("perceive", "{work}/trained", "--n", "4", "--out"),
               "report --out": ("report", "{work}/trained", "--out"),
               "attack --out": ("attack", "{work}/trained", "--n", "2", "--pool", "20", "--steps", "1", "--out"),
               "invert --out": ("invert", "{work}/trained", "--n", "2", "--steps", "1", "--out"),
               "interpolate --save-direction": (*SMALL["interpolate"], "--save-direction")}
    for writer, args in writers.items():
        for run in ("trained", "attached"):
            for file in RUN_FILES:
                if (run, file) != ("attached", "state-000001.safetensors"):
                    cases.append(Case("outputs", f"{writer} {run}/{file}", (*args, f"{{work}}/{run}/{file}"), "refuse",
                                      ("--out", "--save-direction", file)))
    # a figure goes into no run but the one the command is about, and replaces only its own there
    attack = writers["attack --out"]
    cases += [Case("outputs", "perceive --out another run's figure", (*writers["perceive --out"], "{work}/attached/layers.png"),
                   "refuse", ("--out", "attached")),
              Case("outputs", "perceive --out a new name in another run", (*writers["perceive --out"], "{work}/attached/mine.png"),
                   "refuse", ("--out", "attached")),
              Case("outputs", "attack --out the run's perception figure", (*attack, "{work}/trained/perception.png"),
                   "refuse", ("--out", "perception.png"))]
    foreign = lambda work: ((work / "mine").mkdir(), (work / "mine" / "config.json").write_text('{"name": "my other project"}'))  # noqa: E731
    for command in ("train", "attach", "sweep", "train-judge"):
        out = SMALL[command][:-2]  # without its --out
        cases.append(Case("outputs", f"{command} --out a folder of another project", (*out, "--out", "{work}/mine"),
                          "refuse", ("--out", "mine"), foreign))
        cases.append(Case("outputs", f"{command} --out the current folder", (*out, "--out", "."), "refuse",
                          ("--out", "current folder", "'.'")))
    # a folder of figures, unlike a run folder, may hold the user's own files (the image they edited)
    cases.append(Case("outputs", "interpolate --out the current folder", (*SMALL["interpolate"], "--out", "."), "accept",
                      ("--out",)))
    cases += [Case("outputs", f"sweep rerun with {change}", (*SMALL["sweep"][:-1], "{work}/sweep", *extra), "refuse",
                   ("--lams", "--epochs", "sweep"))
              for change, extra in (("other lambdas", ("--lams", "0.1")), ("more epochs", ("--epochs", "2")))]
    cases.append(Case("outputs", "train-judge --out a training run", (*SMALL["train-judge"][:-1], "{work}/trained"),
                      "refuse", ("--out", "trained")))
    return cases


def _png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height (no pixel data): what a decompression bomb looks like to a reader."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _image_folder(work: Path, extra: Callable[[Path], None]) -> None:
    from PIL import Image

    for label in ("cat", "dog"):
        (work / "imgs" / label).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (32, 32), (i * 40, 10, 200 if label == "cat" else 20)).save(work / "imgs" / label / f"{i}.png")
    extra(work / "imgs")


FOLDER_TROUBLE = {
    "a FIFO named bad.png": (lambda root: os.mkfifo(root / "cat" / "bad.png"), ("bad.png",)),
    "an empty class folder": (lambda root: (root / "bird").mkdir(), ("bird",)),
    "a class symlinked out of the tree": (lambda root: (root / "out").symlink_to("/usr/share"), ("out",)),
    "a 20000x20000 PNG header": (lambda root: (root / "cat" / "bomb.png").write_bytes(_png(20000, 20000)), ("bomb.png",)),
    "a text file named x.png": (lambda root: (root / "dog" / "x.png").write_text("hello"), ("x.png",)),
}


def dataset_cases() -> list[Case]:
    cases = []
    for trouble, (extra, names) in FOLDER_TROUBLE.items():
        for command, args in (("train", ("train", "--train-size", "10", "--epochs", "1", "--quiet", "--out", "{work}/new")),
                              ("train --arch svhn", ("train", "--arch", "svhn", "--train-size", "10", "--epochs", "1",
                                                     "--quiet", "--out", "{work}/new")),
                              ("prepare", ("prepare", "--out", "{work}/prepared"))):
            cases.append(Case("datasets", f"folder with {trouble}; {command}", (*args, "--dataset", "folder:{work}/imgs"),
                              "refuse", names, lambda work, extra=extra: _image_folder(work, extra), timeout=120))
    for count in ("1000000000", "0", "-5", "abc"):
        cases.append(Case("datasets", f"mnist-strips:{count}", ("train", "--dataset", f"mnist-strips:{count}", "--epochs",
                                                                 "1", "--quiet", "--out", "{work}/new"), "refuse",
                          ("mnist-strips", "--dataset")))
    for spec in ("folder:{work}/nosuch", "memmap:{work}/trained", "nosuch", "celeba:", "cifar10", "svhn", "mnist"):
        cases.append(Case("datasets", f"--dataset {spec} (absent offline)",
                          ("train", "--dataset", spec, "--data-root", "{work}/empty-root", "--epochs", "1", "--quiet",
                           "--out", "{work}/new"), "refuse", ("--dataset", spec.split(":")[0], "data root", "download"),
                          lambda work: (work / "empty-root").mkdir(), timeout=120))
    return cases


def all_cases(fixtures: Path) -> list[Case]:
    return run_cases(fixtures) + value_cases() + output_cases() + dataset_cases()

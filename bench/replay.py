"""The hostile user's replay (issue 38): every case of ``replay_cases`` run as a user would
run it, on a fresh copy of small real runs, and each outcome classified.

    python bench/replay.py --out /tmp/replay [--areas runs,values,outputs,datasets] [--jobs 2]

Prints a markdown table (cases per area by outcome) and writes every case's outcome to
OUT/cases.jsonl. Outcomes, worst first:

- hang: no answer within the case's time limit (the case is killed);
- traceback: an exception escaped the command;
- data loss: a file the command must not touch (anything of the run but its own outputs)
  changed or vanished, or metrics.jsonl lost epochs;
- silent: exit 0 where the input was bad and had to be refused;
- unclear: refused, but the one Error line does not name the file or the parameter;
- refused needlessly: a good input refused;
- clear error: refused in one Error line that names what is wrong;
- accepted correctly: a good input (or a bad file the command has no use for) accepted.

Each case runs in a forked child of this process (perceptreg imported once), through the
CLI's own entry point (click's runner), in a temporary working folder; a child that does not
answer in time is killed. Cases do real work on small runs: expect 20-40 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from replay_cases import OUTPUT_NAMES, Case, all_cases, make_fixtures  # noqa: E402

OUTCOMES = ("accepted correctly", "clear error", "refused needlessly", "unclear", "silent", "data loss",
            "traceback", "hang")


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder``, by relative path (links not followed)."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digests[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def lost(before: dict[str, str], after: dict[str, str], work: Path) -> list[str]:
    """Files of the runs that changed or vanished, the commands' own outputs aside."""
    return [name for name, digest in before.items()
            if after.get(name) != digest and Path(name).name not in OUTPUT_NAMES
            and not Path(name).name.endswith((".png", ".html")) and ".lock" not in name]


def committed(run: Path) -> tuple[int, int]:
    """A run's committed epochs (state.json) and its rows in metrics.jsonl: what a command that
    owns the run (train --resume) may rewrite, repair or extend, but never make fewer. A file
    that is not a regular one (a FIFO, a link to a device) counts nothing, and is never opened."""
    def text(name: str) -> str:
        path = run / name
        return path.read_text(errors="replace") if path.is_file() and path.stat().st_size < 2**24 else ""
    try:
        epoch = json.loads(text("state.json"))["epoch"]
    except (ValueError, KeyError, TypeError, RecursionError):
        epoch = 0
    return epoch if isinstance(epoch, int) else 0, sum(1 for line in text("metrics.jsonl").splitlines() if line.strip())


def run_child(case: Case, work: Path) -> dict:
    """In the forked child: the case's command, through the CLI entry point."""
    from click.testing import CliRunner

    from perceptreg.cli import main

    os.chdir(work)
    args = [arg.format(work=work) for arg in case.args]
    if args[0] == "@explore":  # the explorer's page and gallery, through its app (no server)
        return explore_child(args[1:])
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    return {"code": result.exit_code, "output": result.output[-2000:], "traceback": escaped or "Traceback" in result.output}


def explore_child(paths: list[str]) -> dict:
    from fastapi.testclient import TestClient

    from perceptreg.core.errors import PerceptregError
    from perceptreg.views.explore import explorer_app

    try:
        client = TestClient(explorer_app(paths), base_url="http://127.0.0.1")  # the Host it serves
        answers = [client.get(route) for route in ("/api/info", "/api/gallery?n=2")]
    except PerceptregError as error:
        return {"code": 1, "output": f"Error: {error}", "traceback": False}
    failed = [a for a in answers if a.status_code >= 400]
    if any(a.status_code >= 500 for a in answers):
        return {"code": 1, "output": failed[0].text[-2000:], "traceback": True}
    return {"code": 1 if failed else 0, "output": "Error: " + failed[0].text[-2000:] if failed else "", "traceback": False}


class Running:
    """One case in its forked child: the copy of the fixtures it runs in, and its answer so far."""

    def __init__(self, case: Case, fixtures: Path, scratch: Path):
        self.case, self.chunks = case, []
        self.work = Path(tempfile.mkdtemp(dir=scratch))
        shutil.copytree(fixtures, self.work, dirs_exist_ok=True, symlinks=True)
        case.prepare(self.work)
        self.before = snapshot(self.work)
        self.committed = committed(self.work / case.owns) if case.owns else None
        self.deadline = time.monotonic() + case.timeout
        self.fd, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: answer through the pipe, then leave, whatever happens, without cleanup
            try:
                os.close(self.fd)
                try:
                    answer = run_child(case, self.work)
                except BaseException as error:  # noqa: BLE001 (what escaped is what we count)
                    answer = {"code": None, "output": repr(error), "traceback": True}
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(json.dumps(answer).encode())
            finally:
                os._exit(0)
        os.close(write)

    def lost(self, after: dict[str, str]) -> list[str]:
        """What the case lost: files changed or gone; of a run the command owns, committed work."""
        files = lost(self.before, after, self.work)
        if self.case.owns is None:
            return files
        files = [name for name in files if not name.startswith(self.case.owns + "/")]
        fewer = any(now < then for now, then in zip(committed(self.work / self.case.owns), self.committed))
        return files + ([f"{self.case.owns}: committed epochs or metrics rows"] if fewer else [])

    def finish(self, hang: bool = False) -> dict:
        if hang:
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        try:
            answer = {"code": None, "output": "", "hang": True} if hang else json.loads(b"".join(self.chunks))
        except ValueError:
            answer = {"code": None, "output": "the child died without an answer", "traceback": True}
        after = snapshot(self.work)
        case = self.case
        outcome = classify(case, answer, self.lost(after))
        shutil.rmtree(self.work, ignore_errors=True)
        return {"area": case.area, "name": case.name, "args": list(case.args), "expect": case.expect,
                "outcome": outcome, "code": answer.get("code"), "output": answer.get("output", "")[-600:]}


def classify(case: Case, answer: dict, lost_files: list[str]) -> str:
    if answer.get("hang"):
        return "hang"
    if answer.get("traceback"):
        return "traceback"
    if lost_files:
        return "data loss"
    output = answer.get("output", "")
    if answer["code"] == 0:
        return "silent" if case.expect == "refuse" else "accepted correctly"  # "either": a value in range
    if case.expect == "accept":
        return "refused needlessly"
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    named = any(name.lower() in output.lower() for name in case.names)
    return "clear error" if len(lines) == 1 and named else "unclear"


def table(results: list[dict]) -> str:
    counts = Counter((r["area"], r["outcome"]) for r in results)
    areas = sorted({r["area"] for r in results})
    head = "| area | cases | " + " | ".join(OUTCOMES) + " |\n|---|" + "---|" * (len(OUTCOMES) + 1)
    rows = [f"| {area} | {sum(counts[area, o] for o in OUTCOMES)} | "
            + " | ".join(str(counts[area, o]) for o in OUTCOMES) + " |" for area in areas]
    total = f"| all | {len(results)} | " + " | ".join(str(sum(counts[a, o] for a in areas)) for o in OUTCOMES) + " |"
    return "\n".join([head, *rows, total])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--areas", default="runs,values,outputs,datasets")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (forked children)")
    parser.add_argument("--limit", type=int, default=0, help="run only every case up to this many per area")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # before any fork: a child must not inherit a thread pool
    args.out.mkdir(parents=True, exist_ok=True)
    fixtures = make_fixtures(args.out / "fixtures")
    cases = [c for c in all_cases(fixtures) if c.area in args.areas.split(",")]
    if args.limit:
        per_area = Counter()
        cases = [c for c in cases if (per_area.update([c.area]) or per_area[c.area] <= args.limit)]
    results = run_all(cases, fixtures, args.out, args.jobs)
    page = table(results)
    (args.out / "table.md").write_text(page + "\n")
    print(page)


def run_all(cases: list[Case], fixtures: Path, out: Path, jobs: int) -> list[dict]:
    """Every case, ``jobs`` children at once, all forked from this one thread (a fork from a
    thread pool could copy a lock another thread holds)."""
    from tqdm import tqdm

    scratch = out / "scratch"
    scratch.mkdir(exist_ok=True)
    pending, running, results = list(reversed(cases)), {}, []
    with open(out / "cases.jsonl", "w") as log, tqdm(total=len(cases), desc="replay") as bar:
        while pending or running:
            while pending and len(running) < jobs:
                child = Running(pending.pop(), fixtures, scratch)
                running[child.fd] = child
            now = time.monotonic()
            ready, _, _ = select.select(list(running), [], [], max(0.0, min(c.deadline for c in running.values()) - now))
            done = []
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                running[fd].chunks.append(chunk)
                if not chunk:
                    done.append((fd, False))
            done += [(fd, True) for fd, c in running.items() if fd not in ready and c.deadline <= time.monotonic()]
            for fd, hang in done:
                result = running.pop(fd).finish(hang)
                log.write(json.dumps(result) + "\n")
                log.flush()
                results.append(result)
                bar.update()
    return results


if __name__ == "__main__":
    main()

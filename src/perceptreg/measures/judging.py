"""Readings of a perception by several independent judges, each with what its readings are
worth: its accuracy on x, its bias over classes, and (where H was attacked) its reading of
x_adv beside that of P(x_adv). A judge is any ``judge(images) -> labels`` with a ``name``
(``adversarial.judges``: a pixel k-NN, another run's CNN).

    tally = JudgeTally(judge, classes=10); tally.add(x, labels, p); reading = tally.result()
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import BaseModel, ConfigDict

from perceptreg.measures.records import Rate


class JudgeReading(BaseModel):
    """One judge's reading of x and of P(x). Not a ``Record``: a reading without an attack
    writes its x_adv and P(x_adv) rates as null, as the files have always had them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    judge: str
    accuracy_on_x: Rate  # it reads x as the true class
    p_read_true: Rate  # it reads P(x) as x's true class
    x_reads: list[int]  # how many x it reads as each class (index = class)
    p_reads: list[int]  # how many P(x) it reads as each class
    labels: list[int]  # how many images are of each class
    p_bias: float  # total variation distance of its readings of P(x) from the labels' shares: 0 none, near 1 one class
    x_bias: float  # the same of its readings of x
    x_adv_read_true: Rate | None = None  # it reads x_adv as the true class; None without an attack
    p_adv_read_true: Rate | None = None  # it reads P(x_adv) as the true class
    # P(x) read as the true class on the images H classifies right (what P(x) shows where the
    # model itself sees the class); None where H was not given or is right on none
    p_read_true_where_right: Rate | None = None
    # x blurred to P(x)'s pixel error (``blur_control.matched_blur``) read as the true class: what
    # the judge makes of a blur of that error, the line its reading of P(x) is read against
    blurred_read_true: Rate | None = None


def class_bias(reads: torch.Tensor, labels: torch.Tensor) -> float:
    """Half the L1 distance of the shares of each class among ``reads`` (counts per class)
    and among ``labels`` (counts per class): 0 when a judge names each class as often as it
    occurs, (K-1)/K when it names one class only on K balanced classes."""
    return 0.5 * float((reads / reads.sum() - labels / labels.sum()).abs().sum())


class JudgeTally:
    """A judge's readings, batch by batch (``add``), then its ``JudgeReading`` (``result``)."""

    def __init__(self, judge, classes: int):
        self.judge, self.classes = judge, classes
        self.columns: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("labels", "x", "p", "x_adv", "p_adv", "right", "blurred")}

    @torch.no_grad()
    def add(self, images: torch.Tensor, labels: torch.Tensor, perceived: torch.Tensor,
            adversarial: torch.Tensor | None = None, perceived_adversarial: torch.Tensor | None = None,
            right: torch.Tensor | None = None, blurred: torch.Tensor | None = None) -> None:
        """One batch: x, its labels and P(x); x_adv and P(x_adv) where H was attacked;
        ``right``: where H classifies x right (bool per image); ``blurred``: x blurred to P(x)'s
        pixel error."""
        read = {"labels": labels, "x": self.judge(images), "p": self.judge(perceived)}
        if right is not None:
            read["right"] = right
        if blurred is not None:
            read["blurred"] = self.judge(blurred)
        if adversarial is not None:
            read |= {"x_adv": self.judge(adversarial), "p_adv": self.judge(perceived_adversarial)}
        for key, value in read.items():
            self.columns[key].append(value.cpu())

    def result(self) -> JudgeReading:
        got = {key: torch.cat(values) for key, values in self.columns.items() if values}
        labels = got["labels"]
        counts = {key: torch.bincount(got[key], minlength=self.classes) for key in ("labels", "x", "p")}
        optional = {f"{key}_read_true": Rate.of(got[key] == labels) for key in ("x_adv", "p_adv", "blurred") if key in got}
        if "right" in got and got["right"].any():
            optional["p_read_true_where_right"] = Rate.of((got["p"] == labels)[got["right"]])
        return JudgeReading(judge=self.judge.name, accuracy_on_x=Rate.of(got["x"] == labels),
                            p_read_true=Rate.of(got["p"] == labels), x_reads=counts["x"].tolist(),
                            p_reads=counts["p"].tolist(), labels=counts["labels"].tolist(),
                            p_bias=class_bias(counts["p"], counts["labels"]),
                            x_bias=class_bias(counts["x"], counts["labels"]), **optional)


def format_judge(reading: JudgeReading, classes: Sequence[str] | None = None) -> str:
    """One judge's reading in one line: what it makes of x and of P(x), its bias, and the
    class it names most often for P(x)."""
    shares = torch.tensor(reading.p_reads, dtype=torch.float64)
    top = int(shares.argmax())
    name = classes[top] if classes else str(top)
    where = ("" if reading.p_read_true_where_right is None else
             f" ({reading.p_read_true_where_right} where H is right)")
    where += "" if reading.blurred_read_true is None else f", x blurred to P(x)'s error {reading.blurred_read_true}"
    attacked = ("" if reading.x_adv_read_true is None else
                f"; x_adv read right {reading.x_adv_read_true}, P(x_adv) {reading.p_adv_read_true}")
    return (f"judge {reading.judge}: x read right {reading.accuracy_on_x}, P(x) read as the true class "
            f"{reading.p_read_true}{where}; class bias of its P(x) readings {reading.p_bias:.2f} (of x "
            f"{reading.x_bias:.2f}; P(x) read most often as {name}, {100 * shares[top] / shares.sum():.0f} %){attacked}")

"""The schema of a metrics.jsonl row, one per epoch: a row of `train` (``training.train.epoch_row``,
with adversarial training's two entries) or of `attach` (``attaching.fitting``: a number per
layer). A row with a missing or unknown key, or a value of the wrong type, is refused, so
that every reader (the report, resume, the sweep) can read a row by its keys. The rows are
checked and handed back as written: their digest in state.json is of the bytes' values.

    check_row({"epoch": 1, ...})  # the model it fits, or a BadJSONError naming the key
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perceptreg.storage.fileio import BadJSONError

# floats are finite: parse_json refuses NaN and Infinity in a row before it is checked here


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=1)
    seconds: float = Field(ge=0)


class TrainedRow(_Row):
    """An epoch of `train`: the losses of the phase trained (None where the phase left it out)
    and the test measures; rows written before an entry existed lack it (its default)."""

    phase: Literal["joint", "classifier", "decoder"]
    lr: float = Field(ge=0)
    train_loss: float
    train_ce: float | None
    train_recon: float | None
    test_accuracy: float = Field(ge=0, le=1)
    test_recon_mse: float | None = Field(ge=0)
    recon_spread: float | None = None
    shape_spread: float | None = None
    decoder_collapsed: bool = False
    train_images_per_second: float | None = None
    test_robust_accuracy: float | None = Field(default=None, ge=0, le=1)  # adversarial training's PGD-10 on a fixed sample
    catastrophic_overfitting: bool | None = None


class AttachedRow(_Row):
    """An epoch of `attach`: each layer's decoder loss, with fine-tuning (mode joint) the
    model's cross-entropy, and where test images were given (`attach` always, ``fit_decoders``
    when asked) each layer's test error with the model's accuracy, the two together."""

    train_recon: dict[str, float]
    train_ce: float | None = None
    test_recon_mse: dict[str, float] | None = None
    test_accuracy: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _tested_together(self):
        if (self.test_recon_mse is None) != (self.test_accuracy is None):
            missing = "test_recon_mse" if self.test_recon_mse is None else "test_accuracy"
            raise ValueError(f"{missing} is missing beside the other test measure")
        return self


def check_row(row: object) -> TrainedRow | AttachedRow:
    """``row`` checked against the schema of its kind (an attach row's losses are per layer);
    a ``BadJSONError`` whose reason names the first key at fault."""
    if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
        raise BadJSONError("metrics.jsonl", "a row must be an object with an integer epoch")
    schema = AttachedRow if isinstance(row.get("train_recon"), dict) else TrainedRow
    try:
        return schema.model_validate(row)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the row"
        raise BadJSONError("metrics.jsonl", f"{where}: {first['msg'].lower()}") from None

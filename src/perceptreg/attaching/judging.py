"""Which judge reads an attach run's perceptions, said before the work with its accuracy on
the clean images it will read. On natural images only a CNN reads a class: without the
dataset's standing CNN judge (or one given), no judge reads, and the table has no judge
columns, rather than the 3-NN pixel judge's numbers, which say little there."""

from __future__ import annotations

from perceptreg.adversarial import judges
from perceptreg.adversarial.defaults import STANDING_JUDGE
from perceptreg.data import ImageDataset, to_float
from perceptreg.measures import format_rate, rate_of


def attach_judge(dataset: str, train_data: ImageDataset, pool: ImageDataset, judge=None, device: str = "cpu",
                 judged: str | None = None):
    """(the judge, or None, and the line that says so): the model of ``judge`` (a ``Run``) if
    given; on grey images the 3-NN pixel judge; on natural images the dataset's standing CNN
    judge once trained, else None; ``judged``: the attached model's architecture, which a judge
    must not share (``judges.run_judge``). The line gives the judge's accuracy on ``pool``'s images x."""
    if judge is None and train_data.image_shape[0] != 3:  # grey digits: the pixel judge reads them well
        reader = judges.main_judge(dataset, train_data, None, device, judged)
    else:  # the given judge, else on natural images the standing one if trained
        reader = judges.reading_judge(dataset, train_data.image_shape, len(train_data.classes), judge, device,
                                      judged)
    if reader is None:
        return None, (f"no judge reads the perceptions, so the table has no judge columns: a 3-NN pixel judge says "
                      f"little of a natural image's class, and {dataset} has no CNN judge yet. Make it once with "
                      f"`perceptreg train-judge --dataset {dataset}` ({STANDING_JUDGE['epochs']} epochs of a "
                      f"{STANDING_JUDGE['arch'].upper()}-style net on the whole training split; it resumes, and every "
                      f"later run reuses it, from {judges.standing_judge_dir(dataset)}), or give `judge` RUN")
    correct = reader(to_float(pool.images).to(device)).cpu() == pool.labels
    return reader, (f"judge: {reader.name}, accuracy on the {len(pool):,} clean test images x it reads: "
                    f"{format_rate(rate_of(correct))}")

"""`perceptreg prepare` as one call: a dataset written once as memory-mapped .npy files, so
training reads it from disk batch by batch (``--dataset memmap:FOLDER``).

    prepared = prepare_dataset("celeba:Eyeglasses", "data/celeba-eyeglasses")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from perceptreg import data as datasets
from perceptreg import runs


@dataclass(frozen=True)
class PreparedDataset:
    path: Path  # the folder written; train with dataset=f"memmap:{path}"
    train_images: int
    test_images: int
    mebibytes: float  # on disk

    def line(self) -> str:
        """What `perceptreg prepare` prints."""
        return (f"{self.train_images} + {self.test_images} images, {self.mebibytes:.1f} MiB: {self.path}; "
                f"train with --dataset memmap:{self.path}")


def prepare_dataset(dataset: str, out: str | Path, data_root: str | None = None) -> PreparedDataset:
    """Write ``dataset`` (any name `train` takes) into the folder ``out`` as memory-mapped files."""
    out = runs.check_output_path(Path(out))
    runs.check_writable(out, "dataset")  # before the dataset is loaded, which may take minutes
    train_data, test_data = datasets.load_dataset(dataset, data_root, datasets.image_shape_for(dataset))
    path = datasets.write_memmap(out, train_data, test_data)
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    return PreparedDataset(path, len(train_data), len(test_data), size)

"""data.loaders: a user's Dataset or DataLoader read as checked (float [0, 1], int64) batches."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from perceptreg.core.errors import PerceptregError
from perceptreg.data import ImageDataset, as_image_dataset, batches, image_batches

IMAGES = torch.arange(6 * 1 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8).view(6, 1, 2, 2)
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


class Items(Dataset):
    """A map-style dataset of one (float image, int label) per index, as torchvision's are."""

    def __len__(self):
        return len(LABELS)

    def __getitem__(self, i):
        return IMAGES[i].float() / 255, int(LABELS[i])


class Objects(Items):
    """Items that are no tensors: as a torchvision dataset without a ToTensor transform gives PIL images."""

    def __getitem__(self, i):
        return object(), 0


def collected(source, **kw):
    xs, ys = zip(*image_batches(source).batches(4, **kw))
    return torch.cat(xs), torch.cat(ys)


def test_every_kind_gives_the_same_pixels_and_labels_as_an_image_dataset():
    ours = ImageDataset(IMAGES, LABELS, ("a", "b", "c"), "ours")
    want = next(batches(ours, 6))
    for source in (TensorDataset(IMAGES, LABELS), TensorDataset(IMAGES.float() / 255, LABELS), Items(),
                   DataLoader(Items(), batch_size=4), DataLoader(TensorDataset(IMAGES, LABELS), batch_size=5)):
        x, y = collected(source)
        assert x.dtype == torch.float32 and torch.allclose(x, want[0], atol=1e-7) and torch.equal(y, want[1])
        assert image_batches(source).image_shape == (1, 2, 2) and len(image_batches(source)) == 6


def test_a_dataset_is_shuffled_in_our_seeded_order_and_a_dataloader_keeps_its_own():
    ours = ImageDataset(IMAGES, LABELS, ("a", "b", "c"), "ours")
    order = [torch.cat([y for _, y in image_batches(s).batches(4, shuffle=True, generator=torch.Generator().manual_seed(5))])
             for s in (ours, TensorDataset(IMAGES, LABELS), Items())]
    assert torch.equal(order[0], order[1]) and torch.equal(order[0], order[2])
    assert torch.equal(collected(DataLoader(Items(), batch_size=4), shuffle=True)[1], LABELS)
    assert image_batches(DataLoader(Items(), batch_size=4)).batch_count(100) == 2


def test_the_pixel_mean_of_uint8_data_is_exactly_the_image_datasets():
    ours = ImageDataset(IMAGES, LABELS, ("a", "b", "c"), "ours")
    assert torch.equal(image_batches(TensorDataset(IMAGES, LABELS)).pixel_mean(), ours.pixel_mean())
    assert torch.allclose(image_batches(DataLoader(Items(), batch_size=4)).pixel_mean(), ours.pixel_mean())


@pytest.mark.parametrize("source, says", [
    (TensorDataset(IMAGES.float() / 255 * 2 - 1, LABELS), "pixels in [0, 1], found values in [-1"),
    (TensorDataset(IMAGES.int(), LABELS), "images of dtype torch.int32"),
    (TensorDataset(IMAGES.view(6, 4), LABELS), "a batch of shape (4, 4), not (batch, channels, height, width)"),
    (TensorDataset(IMAGES, LABELS.float()), "labels must be integer class indices"),
    (TensorDataset(IMAGES, LABELS, LABELS), "(image, label) pairs; it gives 3 values"),
    ([IMAGES, LABELS], "got a list"),
    (Objects(), "do not stack into a batch"),
])
def test_wrong_data_is_one_error_that_says_what_to_pass(source, says):
    with pytest.raises(PerceptregError) as err:
        collected(source)
    assert says in str(err.value) and "TensorDataset(images, labels)" in str(err.value)


def test_a_later_batch_of_another_shape_is_named():
    made = [(IMAGES[:2], LABELS[:2]), (torch.zeros(2, 1, 3, 3, dtype=torch.uint8), LABELS[:2])]
    source = image_batches(DataLoader(made, batch_size=None))  # batches as made (as a custom collate might)
    with pytest.raises(PerceptregError, match=r"shape \(2, 1, 3, 3\).*\(1, 2, 2\)"):
        list(source.batches(2))


def test_as_image_dataset_keeps_uint8_and_names_the_classes():
    held = as_image_dataset(DataLoader(Items(), batch_size=4))
    assert torch.equal(held.images, IMAGES) and torch.equal(held.labels, LABELS)
    assert held.classes == ("0", "1", "2")

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from perceptreg import data
from perceptreg.core.errors import PerceptregError
from perceptreg.data.download import download


def test_mnist5k_is_the_embedded_digits():
    full = data.load_mnist5k()
    assert full.images.shape == (5000, 1, 28, 28) and full.images.dtype == torch.uint8
    assert full.labels.bincount().tolist() == [500] * 10
    assert full.labels[0] == 0 and full.labels[-1] == 9  # rows sorted by class, label last
    assert 0.10 < full.pixel_mean().item() < 0.16  # MNIST's mean intensity is about 0.13


def test_mnist5k_split_is_fixed_stratified_and_disjoint(mnist5k):
    train, test = mnist5k
    assert (len(train), len(test)) == (4000, 1000)
    assert test.labels.bincount().tolist() == [100] * 10
    again = data.mnist5k_split(seed=0)[1]
    assert torch.equal(again.images, test.images)
    other = data.mnist5k_split(seed=1)[1]
    assert not torch.equal(other.images, test.images)
    train_rows = {bytes(im.flatten().numpy()) for im in train.images}
    assert not any(bytes(im.flatten().numpy()) in train_rows for im in test.images[:200])


def test_stratified_split_rounds_to_exact_size():
    labels = torch.tensor([0] * 7 + [1] * 5 + [2] * 3)
    train, test = data.stratified_split(labels, 4, seed=0)
    assert len(test) == 4 and len(train) == 11
    assert sorted(torch.cat([train, test]).tolist()) == list(range(15))
    assert labels[test].bincount(minlength=3).tolist() == [2, 1, 1]


def test_evaluation_subset_is_one_fixed_stratified_draw():
    labels = torch.arange(100) % 10
    d = data.ImageDataset(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), labels, data.DIGITS, "d")
    sample = data.evaluation_subset(d, 20)
    assert len(sample) == 20 and sample.labels.bincount().tolist() == [2] * 10
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(data.evaluation_subset(d, 20).images, sample.images)
    assert torch.equal(sample.images.flatten(), d.images.flatten()[data.stratified_split(labels, 20, 0)[1]])
    assert all(data.evaluation_subset(d, size) is d for size in (None, 0, 100, 500))


def test_batches_cover_every_index_once_and_convert_per_batch():
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1) * 25
    ds = data.ImageDataset(images, torch.arange(10) % 3, ("a", "b", "c"), "tiny")
    out = list(data.batches(ds, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in out] == [4, 4, 2]
    x = torch.cat([b for b, _ in out]).flatten()
    assert x.dtype == torch.float32 and sorted((x * 255).round().tolist()) == [25.0 * i for i in range(10)]
    y = torch.cat([l for _, l in out])
    assert torch.equal(y, (x * 255 / 25).round().long() % 3)  # labels travel with their images


def test_dataset_rejects_labels_out_of_range():
    with pytest.raises(PerceptregError, match=r"labels must lie in 0..1"):
        data.ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 2]), ("a", "b"), "x")


# --- IDX -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    data.write_idx(tmp_path / name, array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    assert np.array_equal(data.read_idx(tmp_path / name), array)


def test_idx_reads_big_endian_int32(tmp_path):
    data.write_idx(tmp_path / "i.idx", np.array([1, -2, 70000], dtype=np.int32))
    raw = (tmp_path / "i.idx").read_bytes()
    assert raw[:8] == bytes([0, 0, 0x0C, 1, 0, 0, 0, 3]) and raw[8:12] == b"\x00\x00\x00\x01"
    assert data.read_idx(tmp_path / "i.idx").tolist() == [1, -2, 70000]


def write_pair(root: Path, n_images=6, n_labels=6, labels=None, gz=True):
    suffix = ".gz" if gz else ""
    images = np.random.default_rng(1).integers(0, 256, (n_images, 28, 28), dtype=np.uint8)
    labels = np.arange(n_labels, dtype=np.uint8) % 10 if labels is None else labels
    data.write_idx(root / f"img{suffix}", images)
    data.write_idx(root / f"lab{suffix}", labels)
    return root / f"img{suffix}", root / f"lab{suffix}"


def test_load_idx_pair(tmp_path):
    images_path, labels_path = write_pair(tmp_path)
    ds = data.load_idx_pair(images_path, labels_path, "fixture")
    assert ds.images.shape == (6, 1, 28, 28) and ds.labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + b"\x00" * 8))
    with pytest.raises(PerceptregError, match=r"bad.gz: .*12340801"):
        data.read_idx(path)


def test_truncated_file_names_the_file(tmp_path):
    images_path, _ = write_pair(tmp_path, gz=False)
    images_path.write_bytes(images_path.read_bytes()[:-10])
    with pytest.raises(PerceptregError, match=r"img: truncated"):
        data.read_idx(images_path)


def test_truncated_gzip_names_the_file(tmp_path):
    images_path, _ = write_pair(tmp_path)
    images_path.write_bytes(images_path.read_bytes()[:-30])
    with pytest.raises(PerceptregError, match=r"img.gz: cannot read"):
        data.read_idx(images_path)


def test_labels_of_wrong_shape(tmp_path):
    images_path, labels_path = write_pair(tmp_path, labels=np.zeros((6, 2), np.uint8))
    with pytest.raises(PerceptregError, match=r"lab.gz: .*\(6, 2\)"):
        data.load_idx_pair(images_path, labels_path, "x")


def test_images_of_wrong_shape(tmp_path):
    images_path, labels_path = write_pair(tmp_path)
    data.write_idx(images_path, np.zeros((6, 784), np.uint8))
    with pytest.raises(PerceptregError, match=r"img.gz: .*\(N, H, W\)"):
        data.load_idx_pair(images_path, labels_path, "x")


def test_labels_out_of_range(tmp_path):
    images_path, labels_path = write_pair(tmp_path, labels=np.array([0, 1, 2, 3, 4, 11], np.uint8))
    with pytest.raises(PerceptregError, match=r"lab.gz: .*0..11"):
        data.load_idx_pair(images_path, labels_path, "x")


def test_count_mismatch(tmp_path):
    images_path, labels_path = write_pair(tmp_path, n_labels=5)
    with pytest.raises(PerceptregError, match=r"img.gz has 6 images but .*lab.gz has 5 labels"):
        data.load_idx_pair(images_path, labels_path, "x")


def test_load_mnist_names_missing_files(tmp_path):
    with pytest.raises(PerceptregError, match="missing train-images-idx3-ubyte.gz"):
        data.load_mnist(tmp_path)


def test_load_mnist_from_canonical_files(tmp_path):
    for split, n in (("train", 12), ("t10k", 4)):
        images_path, labels_path = write_pair(tmp_path, n, n)
        images_path.rename(tmp_path / f"{split}-images-idx3-ubyte.gz")
        labels_path.rename(tmp_path / f"{split}-labels-idx1-ubyte.gz")
    train, test = data.load_mnist(tmp_path)
    assert (len(train), len(test)) == (12, 4) and train.classes == data.DIGITS


# --- downloads, against a local server that honours Range requests ----------------------------

def test_download_resumes_a_partial_file(tmp_path, server):
    url, handler = server
    body = bytes(range(256)) * 100
    handler.files["/f.gz"] = body
    (tmp_path / "f.gz.part").write_bytes(body[:1000])
    path = download([url + "/f.gz"], tmp_path / "f.gz", hashlib.sha256(body).hexdigest())
    assert path.read_bytes() == body
    assert handler.requests == ["bytes=1000-"]
    assert not (tmp_path / "f.gz.part").exists()


def test_download_cut_short_keeps_its_part_for_the_next_call(tmp_path, server):
    url, handler = server
    body = bytes(range(256)) * 100
    handler.files["/f.gz"], handler.cut["/f.gz"] = body, 3000  # the connection drops after 3000 bytes
    with pytest.raises(PerceptregError, match=r"^could not download f.gz; .*3000 of 25600 bytes.*f.gz.part"):
        download([url + "/f.gz"], tmp_path / "f.gz", hashlib.sha256(body).hexdigest())
    assert (tmp_path / "f.gz.part").read_bytes() == body[:3000] and not (tmp_path / "f.gz").exists()
    download([url + "/f.gz"], tmp_path / "f.gz", hashlib.sha256(body).hexdigest())
    assert (tmp_path / "f.gz").read_bytes() == body and handler.requests == [None, "bytes=3000-"]


def test_download_skips_a_verified_file(tmp_path, server):
    url, handler = server
    (tmp_path / "f.gz").write_bytes(b"done")
    download([url + "/f.gz"], tmp_path / "f.gz", hashlib.sha256(b"done").hexdigest())
    assert handler.requests == []


def test_download_falls_back_to_the_next_mirror(tmp_path, server):
    url, handler = server
    handler.files["/b/f.gz"] = b"payload"
    path = download([url + "/a/f.gz", url + "/b/f.gz"], tmp_path / "f.gz",
                         hashlib.sha256(b"payload").hexdigest())
    assert path.read_bytes() == b"payload"


def test_download_checksum_mismatch_is_an_error(tmp_path, server):
    url, handler = server
    handler.files["/f.gz"] = b"tampered"
    with pytest.raises(PerceptregError, match=r"(?s)could not download f.gz.*checksum mismatch"):
        download([url + "/f.gz"], tmp_path / "f.gz", "0" * 64)
    assert not (tmp_path / "f.gz").exists() and not (tmp_path / "f.gz.part").exists()


def test_download_offline_says_what_to_do(tmp_path):
    with pytest.raises(PerceptregError, match=r"(?s)tried:.*127.0.0.1:9/f.gz.*copy f.gz into .* by hand"):
        download(["http://127.0.0.1:9/f.gz"], tmp_path / "f.gz", "0" * 64, timeout=2)


def test_download_mnist_uses_canonical_names(tmp_path, server):
    url, handler = server
    digests = {}
    for name in data.MNIST_FILES:
        handler.files[f"/mnist/{name}"] = name.encode()
        digests[name] = hashlib.sha256(name.encode()).hexdigest()
    original = dict(data.MNIST_FILES)
    data.MNIST_FILES.update(digests)
    try:
        data.download_mnist(tmp_path, mirrors=[url + "/mnist/"])
    finally:
        data.MNIST_FILES.update(original)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(data.MNIST_FILES)


def test_download_verifies_md5_where_only_md5_is_published(tmp_path, server):
    url, handler = server
    handler.files["/f.mat"] = b"svhn"
    path = download([url + "/f.mat"], tmp_path / "f.mat", "md5:" + hashlib.md5(b"svhn").hexdigest())
    assert path.read_bytes() == b"svhn"


def test_a_dataset_is_a_torch_dataset_of_float_images():
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1).expand(10, 1, 2, 3) * 25
    ds = data.ImageDataset(images.contiguous(), torch.arange(10) % 3, ("a", "b", "c"), "tiny")
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 10
    image, label = ds[4]
    assert image.dtype == torch.float32 and image.shape == (1, 2, 3) and (image == 100 / 255).all()
    assert label == 1 and ds[-1][1] == 0
    several, labels = ds[torch.tensor([1, 3])]  # a batch, as a notebook picks images to show
    assert several.shape == (2, 1, 2, 3) and labels.tolist() == [1, 0] and several[1, 0, 0, 0] == 75 / 255
    assert ds.images.dtype == torch.uint8  # the data stays uint8; only the item is converted
    # a DataLoader over it yields the batches `batches` gathers in one call, tensor for tensor
    loaded = list(torch.utils.data.DataLoader(ds, batch_size=4))
    gathered = list(data.batches(ds, 4))
    assert len(loaded) == len(gathered) == 3
    for (x, y), (bx, by) in zip(loaded, gathered):
        assert torch.equal(x, bx) and torch.equal(y, by) and x.dtype == bx.dtype and y.dtype == by.dtype


def test_a_dataset_repr_is_one_short_line(mnist5k):
    train, _ = mnist5k
    assert repr(train) == "ImageDataset(name='mnist5k-train', 4000 images, 1x28x28, 10 classes)"
    faces = data.ImageDataset(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long),
                              ("no",), "faces", {"smiling": torch.zeros(3, dtype=torch.long)})
    assert repr(faces) == "ImageDataset(name='faces', 3 images, 3x4x4, 1 classes, 1 attributes)"

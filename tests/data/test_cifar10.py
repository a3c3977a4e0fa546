"""CIFAR-10's binary version on small format-faithful fixtures: the real file names and
record layout (1 label byte, then the red, green and blue 32x32 planes), a few records per
batch. The real archive is never needed."""

import hashlib
import io
import os
import tarfile

import pytest
import torch

from perceptreg import data
from perceptreg.core.errors import PerceptregError
from perceptreg.data import cifar10, registry

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_BATCH = 3


def record(label: int, red: int, green: int = 20, blue: int = 30) -> bytes:
    """One record: the planes filled with one value each, except red's row 0, column 1 (= 99)."""
    planes = bytearray([red] * 1024 + [green] * 1024 + [blue] * 1024)
    planes[1] = 99
    return bytes([label]) + bytes(planes)


def batch(number: int) -> bytes:
    """Batch ``number`` (1..5 training, 6 the test batch): labels (number + i) % 10, red = 10 * number + i."""
    return b"".join(record((number + i) % 10, 10 * number + i) for i in range(PER_BATCH))


def batch_files(**replace: bytes) -> dict[str, bytes]:
    files = {f"data_batch_{n}.bin": batch(n) for n in range(1, 6)}
    files["test_batch.bin"] = batch(6)
    files["batches.meta.txt"] = ("\n".join(CLASSES) + "\n\n").encode()  # the real file ends in blank lines
    return {**files, **replace}


def archive_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_folder(folder, files):
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


@pytest.fixture(autouse=True)
def fixture_digests(monkeypatch):
    """The batches' published SHA-256s set to the fixtures' own (cifar10's docstring): the
    check stays, and refuses any other bytes (test_a_batch_of_other_bytes_is_refused)."""
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in batch_files().items()
               if name.endswith(".bin")}
    monkeypatch.setattr(cifar10, "BATCH_SHA256", digests)


@pytest.fixture
def archive(monkeypatch):
    """The fixture archive, with the module's published MD5 set to its own."""
    body = archive_bytes(batch_files())
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", hashlib.md5(body).hexdigest())
    return body


@pytest.fixture
def cache(tmp_path, monkeypatch, server, archive):
    """The data cache in tmp_path, the archive served at CIFAR10_URL: (cache folder, handler)."""
    url, handler = server
    handler.files["/cifar-10-binary.tar.gz"] = archive
    monkeypatch.setattr(cifar10, "CIFAR10_URL", url + "/cifar-10-binary.tar.gz")
    monkeypatch.setattr(registry, "DEFAULT_ROOT", tmp_path / "cache")
    return tmp_path / "cache" / "cifar10", handler


def check_splits(train, test):
    assert (len(train), len(test)) == (5 * PER_BATCH, PER_BATCH)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == test.classes == CLASSES
    # batch 1 first, records in file order: labels (1 + i) % 10, then batch 2's ...
    assert train.labels.tolist() == [(n + i) % 10 for n in range(1, 6) for i in range(PER_BATCH)]
    assert test.labels.tolist() == [6, 7, 8]
    first = train.images[0]
    assert first[0, 0, 1] == 99 and first[0, 0, 0] == 10 and first[0, 31, 31] == 10  # red plane
    assert first[1].unique().tolist() == [20] and first[2].unique().tolist() == [30]  # green, blue
    assert train.images[4, 0, 5, 5] == 21 and test.images[2, 0, 0, 0] == 62


@pytest.mark.parametrize("layout", ["archive", "folder in root", "the folder itself", "archive file"])
def test_reads_an_existing_copy(tmp_path, archive, layout):
    root = tmp_path / "copy"
    if layout == "archive":
        root.mkdir()
        (root / "cifar-10-binary.tar.gz").write_bytes(archive)
    elif layout == "archive file":
        root.mkdir()
        (root / "mine.tar.gz").write_bytes(archive)
        root = root / "mine.tar.gz"
    else:
        write_folder(root / "cifar-10-batches-bin", batch_files())
        root = root / "cifar-10-batches-bin" if layout == "the folder itself" else root
    before = sorted(p.name for p in tmp_path.rglob("*"))
    check_splits(*data.load_dataset("cifar10", root=root))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # a user's copy is only read


def test_registered_with_the_svhn_network():
    assert data.training_defaults("cifar10") == {"arch": "svhn"}
    assert data.image_shape_for("cifar10") == (3, 32, 32)


def test_downloads_extracts_once_and_reads_the_folder_after(cache):
    root, handler = cache
    check_splits(*data.load_dataset("cifar10"))
    assert handler.requests == [None]
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]
    assert sorted(p.name for p in (root / "cifar-10-batches-bin").iterdir()) == sorted(batch_files())
    (root / "cifar-10-binary.tar.gz").unlink()  # the extracted folder is what is read from now on
    check_splits(*data.load_dataset("cifar10"))
    assert handler.requests == [None]


def test_a_cut_download_keeps_its_part_and_resumes(cache, archive):
    root, handler = cache
    half = len(archive) // 2
    handler.cut["/cifar-10-binary.tar.gz"] = half
    with pytest.raises(PerceptregError, match=rf"cifar-10-binary.tar.gz.*{half} of {len(archive)} bytes.*"
                                              rf"cifar-10-binary.tar.gz.part"):
        data.load_dataset("cifar10")
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-binary.tar.gz.part"]  # nothing that looks whole
    check_splits(*data.load_dataset("cifar10"))
    assert handler.requests == [None, f"bytes={half}-"]
    assert (root / "cifar-10-binary.tar.gz").read_bytes() == archive


def test_a_download_with_the_wrong_md5_is_refused_and_deleted(cache, monkeypatch):
    root, handler = cache
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(PerceptregError) as caught:
        data.load_dataset("cifar10")
    message = str(caught.value)
    assert "\n" not in message
    assert "cifar-10-binary.tar.gz" in message and "0" * 32 in message
    assert list(root.iterdir()) == []


def test_a_copy_with_the_wrong_md5_says_what_to_delete(tmp_path, archive, monkeypatch):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(PerceptregError, match=rf"^{tmp_path}/cifar-10-binary.tar.gz: .*{hashlib.md5(archive).hexdigest()}"
                                              rf".*delete {tmp_path}/cifar-10-binary.tar.gz"):
        data.load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_truncated_archive_says_what_to_delete(tmp_path, archive, keep):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive[:int(len(archive) * keep)])
    with pytest.raises(PerceptregError, match=rf"^{tmp_path}/cifar-10-binary.tar.gz: truncated"
                                              rf".*delete {tmp_path}/cifar-10-binary.tar.gz"):
        data.load_dataset("cifar10", root=tmp_path)


def test_a_corrupt_archive_says_what_to_delete(tmp_path, archive):
    body = bytearray(archive)
    body[len(body) // 2] ^= 0xFF  # one flipped byte in the compressed stream
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(bytes(body))
    with pytest.raises(PerceptregError, match=rf"^{tmp_path}/cifar-10-binary.tar.gz: .*corrupt.*delete "):
        data.load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize("content, message", [
    (batch(3) + b"\0" * 5, r"9224 bytes"),
    (batch(3)[:-1], r"9218 bytes"),
    (b"", r"0 bytes"),
    (record(4, 0) + record(10, 0), r"record 1 has label 10"),
])
def test_records_of_the_wrong_size_name_the_file(tmp_path, content, message):
    write_folder(tmp_path / "cifar-10-batches-bin", batch_files(**{"data_batch_3.bin": content}))
    with pytest.raises(PerceptregError, match=rf"^{tmp_path}/cifar-10-batches-bin/data_batch_3.bin: {message}"):
        data.load_dataset("cifar10", root=tmp_path)


def test_bad_records_in_a_download_leave_no_extracted_folder(cache, monkeypatch):
    root, handler = cache
    bad = archive_bytes(batch_files(**{"test_batch.bin": batch(6)[:-7]}))
    handler.files["/cifar-10-binary.tar.gz"] = bad
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", hashlib.md5(bad).hexdigest())
    with pytest.raises(PerceptregError, match=r"cifar-10-binary.tar.gz:cifar-10-batches-bin/test_batch.bin: 9212 bytes"):
        data.load_dataset("cifar10")
    assert [p.name for p in root.iterdir()] == ["cifar-10-binary.tar.gz"]  # no folder, no staging left


def test_a_data_root_without_the_batch_files(tmp_path):
    with pytest.raises(PerceptregError, match=rf"^{tmp_path}: .*data_batch_1.bin.*cifar-10-binary.tar.gz"):
        data.load_dataset("cifar10", root=tmp_path)
    files = batch_files()
    del files["test_batch.bin"], files["batches.meta.txt"]
    write_folder(tmp_path / "cifar-10-batches-bin", files)
    with pytest.raises(PerceptregError, match=r"cifar-10-batches-bin: test_batch.bin, batches.meta.txt missing"):
        data.load_dataset("cifar10", root=tmp_path)


def test_class_names_come_from_the_meta_file(tmp_path):
    write_folder(tmp_path / "cifar-10-batches-bin", batch_files(**{"batches.meta.txt": b"cat\ndog\n"}))
    with pytest.raises(PerceptregError, match=r"batches.meta.txt: 2 class names, CIFAR-10 has 10"):
        data.load_dataset("cifar10", root=tmp_path)


def test_a_batch_of_other_bytes_is_refused(tmp_path):
    """Right layout, other bytes (labels 0..9, any pixels): refused by its digest, naming the file."""
    other = b"".join(record(i % 10, 200 + i) for i in range(PER_BATCH))
    write_folder(tmp_path / "cifar-10-batches-bin", batch_files(**{"data_batch_4.bin": other}))
    with pytest.raises(PerceptregError, match=rf"^{tmp_path}/cifar-10-batches-bin/data_batch_4.bin: SHA-256 "
                                              rf"{hashlib.sha256(other).hexdigest()} is not CIFAR-10's"):
        data.load_dataset("cifar10", root=tmp_path)


def test_the_published_digests_are_kept():
    """The module's own digests (the fixture replaces them per test): six 64-hex SHA-256s."""
    import importlib
    fresh = importlib.reload(cifar10)
    assert sorted(fresh.BATCH_SHA256) == sorted((*fresh.TRAIN_FILES, fresh.TEST_FILE))
    assert fresh.BATCH_SHA256["data_batch_1.bin"].startswith("cee916563c9f80d8")
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in fresh.BATCH_SHA256.values())


def test_other_class_names_are_refused(tmp_path):
    names = ("\n".join(("plane",) + CLASSES[1:]) + "\n").encode()
    write_folder(tmp_path / "cifar-10-batches-bin", batch_files(**{"batches.meta.txt": names}))
    with pytest.raises(PerceptregError, match=r"batches.meta.txt: class names plane, .* not CIFAR-10's airplane"):
        data.load_dataset("cifar10", root=tmp_path)


def _fifo(path):
    os.mkfifo(path)


def _zero(path):
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make, what", [(_fifo, "a FIFO"), (lambda p: p.mkdir(), "a folder"),
                                        (_zero, "a character device")])
def test_a_batch_that_is_no_file_is_named_for_what_it_is(tmp_path, make, what):
    files = batch_files()
    del files["data_batch_2.bin"]
    write_folder(tmp_path / "cifar-10-batches-bin", files)
    make(tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin")
    with pytest.raises(PerceptregError, match=rf"data_batch_2.bin is not a regular file but {what}"):
        data.load_dataset("cifar10", root=tmp_path)

import errno
import json
import os
import struct

import pytest
import torch
from torch import nn

from perceptreg.storage import fileio
from perceptreg.storage.fileio import CheckpointError


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    fileio.write_json(path, {"epoch": 1})

    def failing(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(path, failing)
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["a.json"]
    assert (path.stat().st_mode & 0o777) == 0o644


def test_tensors_round_trip(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.uint8)}
    fileio.save_tensors(tmp_path / "t.safetensors", tensors)
    loaded = fileio.load_tensors(tmp_path / "t.safetensors")
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_corrupt_safetensors_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    fileio.save_tensors(path, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupt or not a safetensors file"):
        fileio.load_tensors(path)


def test_corrupt_json_is_named(tmp_path):
    (tmp_path / "state.json").write_text('{"epoch": ')
    with pytest.raises(CheckpointError, match=r"state.json: corrupt JSON"):
        fileio.read_json(tmp_path / "state.json")


def test_strict_load_names_keys():
    model = nn.Linear(2, 3)
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['bias'\]; unexpected key\(s\) \['extra'\]"):
        fileio.load_weights(model, {"weight": torch.zeros(3, 2), "extra": torch.zeros(1)}, "w.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatch \['weight \(3, 3\) vs model \(3, 2\)'\]"):
        fileio.load_weights(model, {"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}, "w.safetensors")


# --- the guarded reader ---------------------------------------------------------------------------


def _fifo(path):
    os.mkfifo(path)


def _zero_link(path):
    os.symlink("/dev/zero", path)


def _folder(path):
    path.mkdir()


def _huge(path):
    with open(path, "wb") as f:
        f.truncate(fileio.JSON_LIMIT + 1)  # sparse: no disk used


@pytest.mark.parametrize("make, words", [(_fifo, "not a regular file but a FIFO"),
                                         (_zero_link, "not a regular file but a character device"),
                                         (_folder, "not a regular file but a folder"), (_huge, "more than the 64 MiB")])
def test_only_a_regular_file_of_bounded_size_is_read(tmp_path, make, words):
    path = tmp_path / "config.json"
    make(path)
    with pytest.raises(CheckpointError, match=words):
        fileio.read_json(path)  # no hang, no MemoryError, no IsADirectoryError


# --- the one JSON parser: valid but pathological JSON is one error naming the file -------------------

PATHOLOGICAL = {
    "deep list": "[" * 100_000,  # RecursionError in json.loads
    "deep object": '{"a":' * 5000 + "1" + "}" * 5000,
    "long integer": "1" * 5000,  # ValueError: over 4300 digits
    "long integer in an object": '{"epoch": ' + "9" * 5000 + "}",
    "long float": "0." + "1" * 5000,
    "long exponent": "1e" + "9" * 200,
    "not JSON": '{"epoch": ',
    "not UTF-8": b'{"a": "\xff"}',
}


@pytest.mark.parametrize("case", PATHOLOGICAL)
def test_pathological_json_is_one_error_naming_the_file(tmp_path, case):
    path = tmp_path / "state.json"
    content = PATHOLOGICAL[case]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CheckpointError) as caught:
        fileio.read_json(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ['{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
                                  '{"a": "' + "7" * 500 + '", "b": "\\"[[["}', '[[[[[[[[[[1]]]]]]]]]]', "1.5e-300"])
def test_brackets_and_digits_inside_strings_and_shallow_nesting_are_fine(text):
    import json as plain
    assert fileio.parse_json(text, "x") == plain.loads(text)


def test_the_bounds_are_the_documented_ones():
    assert fileio.parse_json("[" * 64 + "]" * 64, "x") is not None
    with pytest.raises(CheckpointError, match="nested 65 levels"):
        fileio.parse_json("[" * 65 + "]" * 65, "x")
    assert fileio.parse_json("1" * 100, "x") == int("1" * 100)
    with pytest.raises(CheckpointError, match="a number of 101 characters"):
        fileio.parse_json("1" * 101, "x")


def _header(entries, data=b"", length=None):
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header) if length is None else length) + header + data


@pytest.mark.parametrize("content", [
    b"",  # empty
    _header({}, length=2**62),  # a header longer than the file (allocation of exabytes)
    _header({"w": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 16]}}, b"\0" * 16),
    _header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),  # truncated
    _header({"w": {"dtype": "X9", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
    _header({"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, b"\0" * 16),
    _header([1, 2]),
    struct.pack("<Q", 100_000) + b"[" * 100_000,  # a header nested past the JSON bound
])
def test_a_damaged_safetensors_header_is_refused_before_any_tensor_is_allocated(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    # our own check names what is wrong, before safetensors is handed the file
    with pytest.raises(CheckpointError, match=r"corrupt or not a safetensors file \((header length|its header|tensor)"):
        fileio.load_tensors(path)


def test_a_good_safetensors_file_passes_the_header_check(tmp_path):
    fileio.save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(3, 2), "b": torch.arange(4)})
    assert torch.equal(fileio.load_tensors(tmp_path / "t.safetensors")["b"], torch.arange(4))


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "link.safetensors"])
def test_a_name_read_from_a_file_may_not_lead_out_of_its_folder(tmp_path, name):
    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    (folder / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    with pytest.raises(CheckpointError, match="outside"):
        fileio.guarded(folder / name, folder=folder)


@pytest.mark.parametrize("read", ["memmap", "image", "idx", "report png", "image probe", "weights .pt",
                                  "mnist5k csv"])
def test_dataset_and_figure_files_are_guarded_too(tmp_path, read):
    from perceptreg.core.errors import PerceptregError
    from perceptreg.data import images, memmap, mnist
    from perceptreg.runs import user_models
    from perceptreg.views import report_html

    path = tmp_path / "file"
    os.mkfifo(path)
    calls = {"memmap": lambda: memmap._open_npy(path, (1,), "uint8"),
             "image": lambda: images.decode_image(path, (1, 28, 28)),
             "idx": lambda: mnist.read_idx(path),
             "report png": lambda: report_html.figure(path, "plot"),  # the report's reader of a PNG file
             "image probe": lambda: images.image_header(path),  # a folder's size probe, without --arch
             "weights .pt": lambda: user_models.read_weights(path),  # attach --weights FIFO
             "mnist5k csv": lambda: mnist.load_mnist5k(path)}
    with pytest.raises(PerceptregError, match="not a regular file"):
        calls[read]()  # a FIFO: each of these blocked forever


def test_a_write_that_fails_is_one_error_and_the_old_file_stays(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")

    def disk_full(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(fileio.CheckpointError, match=f"cannot write {path}: No space left on device"):
        fileio.atomic_write(path, disk_full)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]

import json
import os

import pytest
import torch
from torch import nn

from perceptreg.core import checkpoint
from perceptreg.core.checkpoint import CheckpointError


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    checkpoint.write_json(path, {"epoch": 1})

    def failing(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, failing)
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["a.json"]
    assert (path.stat().st_mode & 0o777) == 0o644


def test_tensors_round_trip(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.uint8)}
    checkpoint.save_tensors(tmp_path / "t.safetensors", tensors)
    loaded = checkpoint.load_tensors(tmp_path / "t.safetensors")
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_corrupt_safetensors_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoint.save_tensors(path, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupt or not a safetensors file"):
        checkpoint.load_tensors(path)


def test_corrupt_json_is_named(tmp_path):
    (tmp_path / "state.json").write_text('{"epoch": ')
    with pytest.raises(CheckpointError, match=r"state.json: corrupt JSON"):
        checkpoint.read_json(tmp_path / "state.json")


def test_strict_load_names_keys():
    model = nn.Linear(2, 3)
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['bias'\]; unexpected key\(s\) \['extra'\]"):
        checkpoint.load_weights(model, {"weight": torch.zeros(3, 2), "extra": torch.zeros(1)}, "w.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatch \['weight \(3, 3\) vs model \(3, 2\)'\]"):
        checkpoint.load_weights(model, {"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}, "w.safetensors")


def test_optimizer_state_round_trip():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    tensors, meta = checkpoint.flatten_optimizer(optimizer.state_dict())
    meta = json.loads(json.dumps(meta))  # as it would come back from state.json
    restored = torch.optim.Adam(model.parameters(), lr=0.5)
    restored.load_state_dict(checkpoint.unflatten_optimizer(tensors, meta))
    original = optimizer.state_dict()
    again = restored.state_dict()
    assert again["param_groups"][0]["lr"] == 0.01
    for index, slots in original["state"].items():
        for name, value in slots.items():
            assert torch.equal(again["state"][index][name], value)

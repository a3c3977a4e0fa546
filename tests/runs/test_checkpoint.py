"""A run's own part of its checkpoint: the optimizer's state as flat tensors + JSON, and the
writer lock of its folder."""

import json

import torch
from torch import nn

from perceptreg.runs import checkpoint


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


def test_the_lock_holder_removes_what_killed_writers_left(tmp_path):
    for name in (".model.safetensors.a1b2.tmp", ".tmpAbC123"):  # ours, and safetensors' own
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / "keep.tmp").write_bytes(b"not a leftover")
    with checkpoint.writer_lock(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "keep.tmp"]

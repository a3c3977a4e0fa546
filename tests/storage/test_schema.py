import json
import re

import pytest
from pydantic import ConfigDict

from perceptreg.core.errors import PerceptregError
from perceptreg.storage.schema import Sealed, load_sealed_file, sealed, write_sealed


class Results(Sealed):
    model_config = ConfigDict(extra="allow")
    runs: dict[str, dict]


def test_a_sealed_file_reads_back_as_written_whatever_json_makes_of_its_values(tmp_path):
    # int keys become strings and tuples lists in JSON: the seal is of what the file holds
    values = {"runs": {"a": {"rates": (0.25, 0.5), "by_class": {10: 1, 9: 2}}}}
    write_sealed(tmp_path / "r.json", values)
    read = load_sealed_file(tmp_path / "r.json", Results, "fix it")
    assert read["runs"] == {"a": {"rates": [0.25, 0.5], "by_class": {"10": 1, "9": 2}}}
    assert read["checksum"] == sealed(values)["checksum"]


def test_a_flipped_bit_in_a_sealed_file_is_named_in_it(tmp_path):
    path = tmp_path / "r.json"
    write_sealed(path, {"runs": {"a": {"rate": 0.25}}})
    text = path.read_bytes()
    at = text.index(b"0.25") + 3
    path.write_bytes(text[:at] + bytes([text[at] ^ 0x01]) + text[at + 1:])  # 0.25 -> 0.24: still valid JSON
    assert json.loads(path.read_text())["runs"]["a"]["rate"] == 0.24
    with pytest.raises(PerceptregError, match=rf"^{path}: its content differs from its checksum; the file is "
                                              rf"damaged: fix it$"):
        load_sealed_file(path, Results, "fix it")


def test_a_file_written_before_the_seal_is_read_as_it_is(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"runs": {"a": {"rate": 0.25}}}))
    assert load_sealed_file(path, Results, "fix it") == {"runs": {"a": {"rate": 0.25}}, "checksum": None}


def test_a_sealed_file_records_the_code_that_wrote_it(tmp_path, monkeypatch):
    from perceptreg.storage import schema

    monkeypatch.setattr(schema, "code_version", lambda: "perceptreg 9.9, commit abc")
    write_sealed(tmp_path / "r.json", {"runs": {"a": {"rate": 0.25}}, "code_version": "stale"})
    assert load_sealed_file(tmp_path / "r.json", Results, "fix it")["code_version"] == "perceptreg 9.9, commit abc"


def test_the_code_version_names_the_package_and_its_commit():
    from perceptreg.storage.version import code_version

    assert re.fullmatch(r"perceptreg \S+(, commit [0-9a-f]{40}(-dirty)?)?", code_version())

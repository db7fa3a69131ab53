import json

import numpy as np
import pytest

from charjax.atomic import atomic_path, write_json_atomic


def test_atomic_path_replaces_file_only_when_block_completes(tmp_path):
    out = tmp_path / "a.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temp left behind
    with atomic_path(out) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert out.read_text() == "new"


def test_two_writers_get_different_temp_names(tmp_path):
    with atomic_path(tmp_path / "x.json") as a, atomic_path(tmp_path / "x.json") as b:
        assert a != b
        a.write_text("1")
        b.write_text("2")
    assert (tmp_path / "x.json").read_text() == "1"  # the last rename wins, whole


def test_atomic_path_replaces_a_directory(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "old").write_text("1")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert [p.name for p in out.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_write_json_atomic_accepts_numpy_scalars(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": np.float32(0.5), "b": np.int64(3)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.5, "b": 3}

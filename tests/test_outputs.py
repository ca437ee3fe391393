"""Safe output files: refuse overwrite, atomic rename, nothing half-written."""

import os

import pytest

from hepgen.errors import OutputError
from hepgen.outputs import atomic_directory, atomic_output


def test_atomic_output_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert os.listdir(target.parent) == ["out.txt"]


def test_existing_output_is_refused_and_untouched(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(OutputError, match="exists; use --force"):
        with atomic_output(target):
            pass
    assert target.read_text() == "old"
    with atomic_output(target, force=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_failure_mid_write_leaves_old_file_and_no_partial(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target, force=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_unwritable_parent_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create directory"):
        with atomic_output(blocker / "out.root"):
            pass


def test_atomic_directory(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(ValueError):
        with atomic_directory(target) as tmp:
            (tmp / "a").write_text("1")
            raise ValueError
    assert not target.exists() and os.listdir(tmp_path) == []
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(OutputError):
        with atomic_directory(target):
            pass

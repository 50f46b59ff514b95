"""Directories written whole (nfcot.report.directory_written_whole): exports, RL weights, releases."""
import os

import pytest

from nfcot.report import directory_written_whole


def test_the_new_directory_replaces_the_old_one_only_when_the_body_succeeds(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="export failed"):
        with directory_written_whole(str(out)) as tmp:
            os.makedirs(tmp)
            (tmp_path / "model.tmp" / "half.txt").write_text("half")
            raise RuntimeError("export failed")
    assert sorted(os.listdir(tmp_path)) == ["model"] and (out / "old.txt").read_text() == "old"
    with directory_written_whole(str(out) + "/") as tmp:
        assert tmp == str(tmp_path / "model.tmp") and not os.path.exists(tmp)
        os.makedirs(tmp)
        (tmp_path / "model.tmp" / "new.txt").write_text("new")
    assert sorted(os.listdir(tmp_path)) == ["model"] and os.listdir(out) == ["new.txt"]

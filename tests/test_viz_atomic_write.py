"""viz.paths.write_atomically, which the scan's state and the explorer's page go through: the
old file or the new one, never half of one, and outputs readable by all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from viz.paths import write_atomically


def test_a_replaced_file_is_whole_and_readable_by_all(tmp_path):
    target = tmp_path / "scan.json"
    target.write_bytes(b"old")
    write_atomically(target, lambda out: out.write(b"new"), prefix=".tmp-", durable=True)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not the temporary file's private 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.json"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, failure):
    target = tmp_path / "index.html"
    target.write_bytes(b"old")

    def half_then_fail(out) -> None:
        out.write(b"ne")
        raise failure

    with pytest.raises(type(failure)):
        write_atomically(target, half_then_fail, prefix=".index.html.")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_scan_outputs_are_readable_by_all(tmp_path):
    from test_scan import PREPROCESS, make_images, tiny_model
    from viz.scan import scan

    result = scan(tiny_model(), [make_images(tmp_path / "images", 3, seed=2)], ["1"], top=2, batch_size=2,
                  preprocess=PREPROCESS, progress=False)
    result.save(tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / "scan.json").stat().st_mode) == 0o644

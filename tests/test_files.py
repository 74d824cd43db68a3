"""recforge.files: a failed write leaves neither a partial target nor a temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.files import atomic_write, atomic_write_all, atomic_write_text


def test_atomic_write_replaces_the_target_and_keeps_the_suffix(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"new")

    out = atomic_write(tmp_path / "sub" / "curve.png", write)
    assert out.read_bytes() == b"new" and seen[0].suffix == ".png" and seen[0] != out
    assert sorted(p.name for p in out.parent.iterdir()) == ["curve.png"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "config.yaml", "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_staged_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    import pytest

    from recforge.files import staged_dir

    target = tmp_path / "export"
    with staged_dir(target) as stage:
        (stage / "a.onnx").write_text("v1")
    assert (target / "a.onnx").read_text() == "v1"
    with pytest.raises(RuntimeError), staged_dir(target) as stage:
        (stage / "a.onnx").write_text("v2")
        raise RuntimeError("export failed half-way")
    assert (target / "a.onnx").read_text() == "v1"  # the previous export is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left
    with staged_dir(target) as stage:
        (stage / "b.onnx").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["b.onnx"]


def test_atomic_write_all_changes_every_file_or_none(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "sub" / "b.pt"
    a.write_text("old a")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_all({a: lambda tmp: tmp.write_text("new a"), b: fail})
    assert a.read_text() == "old a" and not b.exists()  # the first file was written but never moved in
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.json"]
    atomic_write_all({a: lambda tmp: tmp.write_text("new a"), b: lambda tmp: tmp.write_text("new b")})
    assert (a.read_text(), b.read_text()) == ("new a", "new b")

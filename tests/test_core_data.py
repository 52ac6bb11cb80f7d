"""Data: the TomBERT TSV reader on the real benchmark files and on broken files, image labels,
visual sources, any TSV as a split, write/read round trip, and where the data root comes from."""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from cmcs_core.data.dataset import (
    DATA_DIR_ENV,
    MissingVisualError,
    dataset_files,
    image_label_sets,
    load_split,
    resolve_data_dir,
)
from cmcs_core.data.tsv import TSVFormatError, read_tsv, write_tsv

# ../shared/data/README.md: rows and neg / neu / pos per split, and images per split.
README_COUNTS = {
    ("twitter2015", "train"): (3179, (368, 1883, 928), 2101),
    ("twitter2015", "dev"): (1122, (149, 670, 303), 727),
    ("twitter2015", "test"): (1037, (113, 607, 317), 674),
    ("twitter2017", "train"): (3562, (416, 1638, 1508), 1745),
    ("twitter2017", "dev"): (1176, (144, 517, 515), 577),
    ("twitter2017", "test"): (1234, (168, 573, 493), 587),
}
HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


# -- the real files -----------------------------------------------------------------------
@pytest.mark.parametrize("dataset,split", sorted(README_COUNTS))
def test_real_split_rows_labels_and_images_match_readme(data_dir: Path, dataset: str, split: str) -> None:
    path = data_dir / dataset / f"{split}.tsv"
    samples = read_tsv(path)
    rows, label_counts, images = README_COUNTS[(dataset, split)]
    assert len(samples) == rows
    counts = Counter(s.label for s in samples)
    assert (counts[0], counts[1], counts[2]) == label_counts
    assert len({s.image_id for s in samples}) == images
    # Every sample points at its own physical line (no rows merged): the line starts with its index.
    lines = path.read_text(encoding="utf-8").split("\n")
    assert all(lines[s.line - 1].split("\t")[0].strip() == s.index for s in samples)
    assert all("$T$" in s.tweet and s.target and s.target in s.text for s in samples)


def test_twitter2017_bare_quotes_survive_verbatim(data_dir: Path) -> None:
    path = data_dir / "twitter2017" / "train.tsv"
    samples = read_tsv(path)
    quoted = [s for s in samples if '"' in s.tweet or '"' in s.target]
    assert quoted, "Twitter2017 train is known to contain bare double quotes"
    raw = path.read_text(encoding="utf-8").split("\n")
    for s in quoted:
        fields = [f.strip() for f in raw[s.line - 1].split("\t")]
        assert fields == [s.index, str(s.label), s.image_id, s.tweet, s.target]


def test_quote_at_field_start_does_not_merge_rows(tmp_path: Path) -> None:
    """With csv quoting on, an opening `"` swallows the following rows; the reader keeps them apart."""
    rows = [
        '1\t2\ta.jpg\t"$T$ is the best\tAlice',
        "2\t1\tb.jpg\t$T$ said \"hi\tBob",
        '3\t0\tc.jpg\t"quoted" $T$\tCarol',
        "4\t1\td.jpg\t$T$ again\tDan",
    ]
    path = _write(tmp_path / "quotes.tsv", rows)
    with path.open(encoding="utf-8", newline="") as handle:
        naive = list(csv.reader(handle, delimiter="\t"))[1:]
    assert len(naive) < len(rows)  # quoting on merges rows (the failure the reader avoids)
    samples = read_tsv(path)
    assert [s.tweet for s in samples] == ['"$T$ is the best', '$T$ said "hi', '"quoted" $T$', "$T$ again"]
    assert [s.line for s in samples] == [2, 3, 4, 5]


@pytest.mark.parametrize("dataset", ["twitter2015", "twitter2017"])
def test_test_tsv_short_header_is_read_by_position(data_dir: Path, dataset: str) -> None:
    path = data_dir / dataset / "test.tsv"
    lines = path.read_text(encoding="utf-8").split("\n")
    header, first = lines[0].split("\t"), lines[1].split("\t")
    assert len(header) == 4 and len(first) == 5  # the quirk this test is about
    s = read_tsv(path)[0]
    assert (s.index, s.label, s.image_id, s.tweet, s.target, s.line) == (
        first[0], int(first[1]), first[2], first[3].strip(), first[4].strip(), 2
    )


def test_real_image_labels_are_the_union_of_target_labels(data_dir: Path) -> None:
    files = dataset_files("twitter2017", data_dir)
    split = load_split(files, "dev")
    union: dict[str, set[int]] = defaultdict(set)
    for s in split.samples:
        union[s.image_id].add(s.label)
    for s, row in zip(split.samples, split.image_labels):
        assert set(np.flatnonzero(row).tolist()) == union[s.image_id]
    assert (split.image_labels.sum(1) > 1).any()  # real images are shared by targets of different labels
    assert split.visual_source == "captions" and split.dropped == 0
    assert all(isinstance(c, str) and c.strip() for c in split.visual_text)


def test_faces_are_appended_to_captions(data_dir: Path) -> None:
    files = dataset_files("twitter2015", data_dir)
    plain = load_split(files, "test", max_samples=20)
    faces = load_split(files, "test", use_faces=True, max_samples=20)
    assert faces.visual_source == "captions+faces"
    assert all(f.startswith(p) for p, f in zip(plain.visual_text, faces.visual_text))
    assert any(len(f) > len(p) for p, f in zip(plain.visual_text, faces.visual_text))


def test_any_tsv_path_works_as_a_split(data_dir: Path, tmp_path: Path) -> None:
    files = dataset_files("twitter2015", data_dir)
    real = read_tsv(files.splits["test"])[:7]
    custom = write_tsv(tmp_path / "my_edit.tsv", real)
    split = load_split(files, str(custom))
    assert split.name == "my_edit" and split.path == custom
    assert [s.index for s in split.samples] == [s.index for s in real]
    captions = json.loads(files.captions.read_text(encoding="utf-8"))
    assert split.visual_text == [captions[s.image_id] for s in real]
    with pytest.raises(ValueError, match="unknown split"):
        files.split_path("validation")


def test_write_tsv_round_trips_real_rows_with_quotes(data_dir: Path, tmp_path: Path) -> None:
    original = read_tsv(data_dir / "twitter2017" / "train.tsv")
    out = write_tsv(tmp_path / "copy.tsv", original)
    again = read_tsv(out)
    key = lambda s: (s.index, s.label, s.image_id, s.tweet, s.target)  # noqa: E731
    assert [key(s) for s in again] == [key(s) for s in original]
    assert list(tmp_path.iterdir()) == [out]  # atomic write: no temporary file left behind


# -- broken input: clear errors naming file and line -----------------------------------------
def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "train.tsv"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        read_tsv(missing)


GOOD = "1\t2\ta.jpg\t$T$ is great\tAlice"


@pytest.mark.parametrize(
    "bad_row,message",
    [
        ("2\t1\tb.jpg\t$T$ is here", "expected 5 tab-separated columns"),
        ("2\t1\tb.jpg\t$T$ is here\tBob\textra", "expected 5 tab-separated columns"),
        ("2\t7\tb.jpg\t$T$ is here\tBob", "unknown label '7'"),
        ("2\tgreat\tb.jpg\t$T$ is here\tBob", "unknown label 'great'"),
        ("2\t1\tb.jpg\tBob is here\tBob", r"no \$T\$ placeholder"),
        ("2\t1\tb.jpg\t$T$ is here\t  ", "empty target"),
    ],
)
def test_bad_rows_raise_with_file_and_line(tmp_path: Path, bad_row: str, message: str) -> None:
    path = _write(tmp_path / "bad.tsv", [GOOD, GOOD.replace("1\t", "3\t", 1), bad_row])
    with pytest.raises(TSVFormatError, match=message) as err:
        read_tsv(path)
    assert f"{path}:4" in str(err.value)  # header is line 1, the bad row is line 4


def test_label_names_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.tsv", [GOOD, "", "2\tNegative\tb.jpg\t$T$ is bad\tBob"])
    samples = read_tsv(path)
    assert [(s.label, s.line) for s in samples] == [(2, 2), (0, 4)]
    assert samples[1].text == "Bob is bad"


def _folder_dataset(tmp_path: Path, rows: list[str], captions: dict[str, str]) -> Path:
    root = tmp_path / "mini"
    root.mkdir()
    _write(root / "train.tsv", rows)
    (root / "captions.json").write_text(json.dumps(captions), encoding="utf-8")
    return root


def test_missing_caption_is_counted_and_dropped_only_on_request(tmp_path: Path) -> None:
    rows = [
        "1\t1\ta.jpg\t$T$ one\tA",
        "2\t2\tlost.jpg\t$T$ two\tB",
        "3\t0\tb.jpg\t$T$ three\tC",
        "4\t1\tlost.jpg\t$T$ four\tD",
        "5\t2\tblank.jpg\t$T$ five\tE",
    ]
    root = _folder_dataset(tmp_path, rows, {"a.jpg": "a dog", "b.jpg": "a cat", "blank.jpg": "  "})
    files = dataset_files(str(root))
    with pytest.raises(MissingVisualError) as err:
        load_split(files, "train")
    msg = str(err.value)
    assert "3 of 5 rows" in msg
    for line in (3, 5, 6):
        assert f"{root / 'train.tsv'}:{line}" in msg
    split = load_split(files, "train", drop_missing=True)
    assert [s.index for s in split.samples] == ["1", "3"]
    assert split.dropped == 3 and split.visual_text == ["a dog", "a cat"]


def test_missing_image_file_in_pixel_mode(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path, ["1\t1\ta.jpg\t$T$ one\tA", "2\t1\tb.jpg\t$T$ two\tB"], {})
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"not read here")
    files = dataset_files(str(root), image_dir=images)
    with pytest.raises(MissingVisualError, match="1 of 2 rows have no image file"):
        load_split(files, "train")
    split = load_split(files, "train", drop_missing=True)
    assert split.visual_source == "pixels" and split.image_paths == [images / "a.jpg"]
    with pytest.raises(FileNotFoundError, match="image directory not found"):
        dataset_files(str(root), image_dir=tmp_path / "absent")


def test_multi_hot_image_labels(tmp_path: Path) -> None:
    rows = [
        "1\t1\tshared.jpg\t$T$ at the game\tA",  # neutral
        "2\t2\tshared.jpg\tA at the $T$\tgame",  # positive, same image
        "3\t0\tsolo.jpg\t$T$ lost again\tC",  # negative alone
        "4\t2\tshared.jpg\t$T$ wins\tD",  # positive again: still (0,1,1)
    ]
    root = _folder_dataset(tmp_path, rows, {"shared.jpg": "a stadium", "solo.jpg": "a man"})
    split = load_split(dataset_files(str(root)), "train")
    expected = np.array([[0, 1, 1], [0, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(split.image_labels, expected)
    # Per split: the first two rows alone give the shared image only neutral+positive.
    np.testing.assert_array_equal(image_label_sets(split.samples[2:3])["solo.jpg"], [1, 0, 0])
    assert "shared.jpg" not in image_label_sets(split.samples[2:3])


# -- the data root ----------------------------------------------------------------------------
def test_resolve_data_dir_honours_env_and_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir, flag_dir = tmp_path / "env", tmp_path / "flag"
    env_dir.mkdir()
    flag_dir.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(env_dir))
    assert resolve_data_dir() == env_dir
    assert resolve_data_dir(flag_dir) == flag_dir  # the flag wins over the environment
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        resolve_data_dir()
    with pytest.raises(FileNotFoundError, match="absent"):
        resolve_data_dir(tmp_path / "absent")
    # An env root without the benchmark gives a FileNotFoundError only when a split is asked for.
    monkeypatch.setenv(DATA_DIR_ENV, str(env_dir))
    files = dataset_files("twitter2015")
    with pytest.raises(FileNotFoundError, match=str(env_dir / "twitter2015" / "train.tsv")):
        load_split(files, "train")


# -- progress bars ------------------------------------------------------------------------------------
@pytest.mark.parametrize("env,progress,drawn", [("", True, True), ("1", True, False), ("", False, False),
                                                 ("0", True, True)])
def test_extraction_bars_honour_the_caller_and_tqdm_disable(data_dir: Path, text_encoder, capsys,
                                                            monkeypatch: pytest.MonkeyPatch, env: str,
                                                            progress: bool, drawn: bool) -> None:
    """TQDM_DISABLE switches the library's bars off even where a caller asks for them (tqdm itself
    lets an explicit disable=False win), so benchmarks time no bar drawing."""
    from cmcs_core.encoders.features import extract_text

    monkeypatch.setenv("TQDM_DISABLE", env)
    split = load_split(dataset_files("twitter2015", data_dir), "train", max_samples=4)
    extract_text(text_encoder, split, text_encoder.num_layers, 64, cache=False, progress=progress)
    assert ("text train" in capsys.readouterr().err) == drawn

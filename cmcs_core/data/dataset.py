"""Find a dataset's files and assemble splits with their visual source and image labels.

A dataset is either a named benchmark under the data root (twitter2015, twitter2017) or a
folder holding train/dev/test.tsv with optional captions.json, faces.json and images/.
Any single TSV in the benchmark format can be evaluated against a dataset's visual files.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmcs_core.data.tsv import Sample, read_tsv
from cmcs_core.io import atomic_save, cache_root

BENCHMARKS = ("twitter2015", "twitter2017")
SPLITS = ("train", "dev", "test")
DATA_DIR_ENV = "CMCS_DATA_DIR"
# An image column holding this name means "no visual input": an empty caption, or a blank grey
# image for runs that read pixels. The stress test's no_visual edit writes it; any TSV may use it.
NO_VISUAL = "NO_VISUAL"


class MissingVisualError(ValueError):
    """Rows whose image has no caption or file; lists them so the user can fix or drop."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """--data-dir, then $CMCS_DATA_DIR, then ../shared/data beside the project if present."""
    for candidate in (data_dir, os.environ.get(DATA_DIR_ENV)):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"data directory not found: {path}")
            return path
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = base.parent / "shared" / "data"
        if path.is_dir():
            return path
    return None


@dataclass(frozen=True)
class DatasetFiles:
    name: str
    splits: dict[str, Path]
    captions: Path | None
    faces: Path | None
    image_dir: Path | None

    def split_path(self, split: str) -> Path:
        """A split name, or any TSV path in the benchmark format."""
        if split in self.splits:
            return self.splits[split]
        path = Path(split)
        if path.suffix == ".tsv" or path.exists():
            return path
        raise ValueError(f"unknown split {split!r}: use one of {sorted(self.splits)} or a .tsv path")


def dataset_files(
    dataset: str, data_dir: str | Path | None = None, image_dir: str | Path | None = None
) -> DatasetFiles:
    """Locate a benchmark or a dataset folder; image_dir switches the visual source to pixels."""
    image = Path(image_dir).expanduser() if image_dir else None
    if image is not None and not image.is_dir():
        raise FileNotFoundError(f"image directory not found: {image}")
    if dataset in BENCHMARKS:
        root = resolve_data_dir(data_dir)
        if root is None:
            raise FileNotFoundError(
                f"no data directory for {dataset}: pass --data-dir or set {DATA_DIR_ENV} "
                "(the folder holding twitter2015/, twitter2017/, captions/)"
            )
        caps = root / "captions" / f"{dataset}_images.json"
        faces = root / "face_descriptions" / f"{dataset}.json"
        return DatasetFiles(
            dataset,
            {s: root / dataset / f"{s}.tsv" for s in SPLITS},
            caps if caps.is_file() else None,
            faces if faces.is_file() else None,
            image,
        )
    folder = Path(dataset).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r} is neither a benchmark {BENCHMARKS} nor a folder")
    # Pixels only on request (--image-dir, e.g. the folder's images/): captions stay the default.
    caps, faces = folder / "captions.json", folder / "faces.json"
    return DatasetFiles(
        folder.name,
        {s: folder / f"{s}.tsv" for s in SPLITS if (folder / f"{s}.tsv").is_file()},
        caps if caps.is_file() else None,
        faces if faces.is_file() else None,
        image,
    )


def split_tag(split: str, path: str | Path) -> str:
    """Name of a split's outputs: train/dev/test, or a file's stem plus a digest of its content,
    so test.tsv of two datasets (or two edits of one) never share an output name."""
    if split in SPLITS:
        return split
    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:8]
    return f"{Path(path).stem}-{digest}"


def load_json_map(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping image file -> text")
    return {str(k): str(v) for k, v in data.items()}


def image_label_sets(samples: list[Sample]) -> dict[str, np.ndarray]:
    """Multi-hot labels per image: every label of every target sharing that image id."""
    labels: dict[str, np.ndarray] = {}
    for s in samples:
        labels.setdefault(s.image_id, np.zeros(3, dtype=np.float32))[s.label] = 1.0
    return labels


def blank_image() -> Path:
    """A mid-grey 224x224 PNG in the cache: what a NO_VISUAL row shows a pixel encoder."""
    from PIL import Image  # pixels only: caption runs never load PIL

    path = cache_root() / "no_visual.png"
    if not path.is_file():
        atomic_save(path, lambda p: Image.new("RGB", (224, 224), (128, 128, 128)).save(p, format="PNG"))
    return path


def _image_path(image_dir: Path, image_id: str) -> Path:
    return blank_image() if image_id == NO_VISUAL else image_dir / image_id


@dataclass
class Split:
    name: str
    path: Path
    samples: list[Sample]
    visual_source: str  # "captions", "captions+faces" or "pixels"
    visual_text: list[str] | None  # per sample, for caption sources
    image_paths: list[Path] | None  # per sample, for pixels
    image_labels: np.ndarray  # (N, 3) multi-hot of the sample's image in this split
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def load_split(
    files: DatasetFiles,
    split: str,
    use_faces: bool = False,
    drop_missing: bool = False,
    max_samples: int | None = None,
    captions: dict[str, str] | None = None,
) -> Split:
    """Read one split (or TSV path) and attach its visual source (attach_visual)."""
    path = files.split_path(split)
    samples = read_tsv(path)
    if max_samples is not None:
        samples = samples[:max_samples]
    name = split if split in files.splits else Path(split).stem
    return attach_visual(files, samples, path, name, use_faces, drop_missing, captions)


def attach_visual(
    files: DatasetFiles,
    samples: list[Sample],
    path: Path,
    name: str,
    use_faces: bool = False,
    drop_missing: bool = False,
    captions: dict[str, str] | None = None,
) -> Split:
    """Rows (from a file, or held in memory: `path` names them in errors) with their visual source.

    Pixels when files.image_dir is set, else captions (+ face descriptions). Rows whose image
    has no caption or file raise MissingVisualError unless drop_missing is set.
    """
    missing: list[Sample] = []
    if files.image_dir is not None:
        source = "pixels"
        found = [(s, _image_path(files.image_dir, s.image_id)) for s in samples]
        missing = [s for s, p in found if not p.is_file()]
    else:
        if captions is None:
            if files.captions is None:
                raise FileNotFoundError(
                    f"{files.name}: no captions.json and no --image-dir: the visual modality needs one"
                )
            captions = load_json_map(files.captions)
            if use_faces:
                if files.faces is None:
                    raise FileNotFoundError(f"{files.name}: --use-faces given but no face descriptions file")
                faces = load_json_map(files.faces)
                captions = {k: f"{v} {faces.get(k, '')}".strip() for k, v in captions.items()}
        captions = {**captions, NO_VISUAL: ""}
        source = "captions+faces" if use_faces else "captions"
        missing = [s for s in samples if s.image_id != NO_VISUAL and not captions.get(s.image_id, "").strip()]
    if missing:
        if not drop_missing:
            first = ", ".join(f"{path}:{s.line} ({s.image_id})" for s in missing[:5])
            what = "file in the image folder" if source == "pixels" else "caption"
            raise MissingVisualError(
                f"{len(missing)} of {len(samples)} rows have no image {what}: {first}"
                f"{' ...' if len(missing) > 5 else ''}. Pass --drop-missing-visual to drop them."
            )
        lost = {id(s) for s in missing}
        samples = [s for s in samples if id(s) not in lost]
    label_sets = image_label_sets(samples)
    return Split(
        name=name,
        path=path,
        samples=samples,
        visual_source=source,
        visual_text=None if source == "pixels" else [captions[s.image_id] for s in samples],
        image_paths=[_image_path(files.image_dir, s.image_id) for s in samples] if source == "pixels" else None,
        image_labels=np.stack([label_sets[s.image_id] for s in samples]),
        dropped=len(missing),
    )

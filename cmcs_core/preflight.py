"""What a config will open on this machine, checked before anything starts or is written: the dataset's
folder and splits, the encoders it names. RunConfig.validate() checks values alone, because every reader
of a config.json calls it (the app reads runs whose data may live elsewhere); `train`, `grid` and
`search` call this too, so a missing dataset or an unknown model is one line, not a failed run."""
from __future__ import annotations

from cmcs_core.config import RunConfig
from cmcs_core.data.dataset import dataset_files
from cmcs_core.encoders.specs import text_model_problem, visual_model_problem


def dataset_problem(cfg: RunConfig) -> str | None:
    """None when the dataset's folder holds every split the run reads (train, dev, and test unless
    read_test is off)."""
    d = cfg.data
    try:
        files = dataset_files(d.dataset, d.data_dir)
    except FileNotFoundError as err:
        return str(err)
    needed = ("train", "dev") + (("test",) if d.read_test else ())
    missing = [s for s in needed if s not in files.splits or not files.splits[s].is_file()]
    if missing:
        return f"dataset {d.dataset!r} has no {', '.join(s + '.tsv' for s in missing)}"
    return None


def _text_models(cfg: RunConfig) -> list[tuple[str, str]]:
    """(spec, field) of each text encoder the run loads."""
    enc = cfg.encoder
    return [(enc.text_model, "text_model")] + ([(enc.caption_model, "caption_model")] if enc.caption_model else [])


def check_inputs(*configs: RunConfig) -> None:
    """Refuse, in one line, configs whose inputs this machine lacks (each distinct problem once; each
    model name looked up once, however many runs name it)."""
    problems: list[str] = []
    for cfg in configs:
        problems += [dataset_problem(cfg), visual_model_problem(cfg.encoder.visual_model, cfg.data.image_dir)]
    for spec, field in dict.fromkeys(pair for cfg in configs for pair in _text_models(cfg)):
        problems.append(text_model_problem(spec, field))
    problems = list(dict.fromkeys(p for p in problems if p))
    if problems:
        raise FileNotFoundError("; ".join(problems))

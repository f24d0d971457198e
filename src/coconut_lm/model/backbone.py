"""Backbones: GPT-2-architecture models built from scratch, or any pretrained HF causal LM.

Pretrained GPT-2 weights cannot be downloaded on the machines this project targets, so the default
is a GPT-2-architecture model built from a named preset and trained from scratch on a word-level
vocabulary. Any local or hub causal LM loads through `AutoModelForCausalLM`.

    base = build_backbone("tiny", vocab_size=len(tok), special=special_token_ids(tok))
    base = load_backbone("path/to/hf_model")              # any causal LM
    n_new = resize_for_new_tokens(base, tok)              # after add_coconut_tokens(tok)
    llama = build_tiny_llama(vocab_size=64)               # GQA + RoPE, for tests
"""

from __future__ import annotations

import os
from typing import Any

import torch

from coconut_lm.errors import CoconutError
from coconut_lm.recipe.tokens import SpecialTokens

# GPT-2-architecture presets for from-scratch training. Dropout is off for the small presets: they
# train on synthetic data for many epochs, where the official 0.1 only slows the fit; the 124M
# preset keeps GPT-2's own 0.1 so that it matches the paper's backbone.
PRESETS: dict[str, dict[str, Any]] = {
    "micro": {"n_layer": 2, "n_embd": 64, "n_head": 2, "dropout": 0.0},  # tests and smoke runs
    "tiny": {"n_layer": 4, "n_embd": 256, "n_head": 4, "dropout": 0.0},
    "mini": {"n_layer": 3, "n_embd": 128, "n_head": 4, "dropout": 0.0},
    "small": {"n_layer": 6, "n_embd": 384, "n_head": 6, "dropout": 0.0},
    "gpt2-124m": {"n_layer": 12, "n_embd": 768, "n_head": 12, "dropout": 0.1},
}


#: GPT2Config fields every from-scratch GPT-2 gets. "gelu_pytorch_tanh" is GPT-2's own tanh-approximated
#: GELU ("gelu_new") as one fused kernel: the same function (within 3e-7), about 2.7x cheaper forward
#: and backward on CPU, where the unfused one cost about 10% of a small model's training step.
FROM_SCRATCH_GPT2: dict[str, Any] = {"activation_function": "gelu_pytorch_tanh"}


def gpt2_config(preset_or_config: str | dict[str, Any], vocab_size: int, n_positions: int = 1024,
                special: SpecialTokens | None = None):
    """A `GPT2Config` from a preset name or a dict (a preset under key "preset", plus overrides).

    The dict form takes `n_layer`, `n_embd`, `n_head`, `dropout` (sets all three GPT-2 dropouts)
    and any other `GPT2Config` field.
    """
    from transformers import GPT2Config

    if isinstance(preset_or_config, str):
        fields = {"preset": preset_or_config}
    elif isinstance(preset_or_config, dict):
        fields = dict(preset_or_config)
    else:
        raise CoconutError(f"model preset must be a name or a dict, got {type(preset_or_config).__name__}")
    name = fields.pop("preset", None)
    if name is not None:
        if name not in PRESETS:
            raise CoconutError(f"unknown model preset '{name}'; choose one of {sorted(PRESETS)}")
        fields = {**PRESETS[name], **fields}
    dropout = fields.pop("dropout", 0.1)
    ids = {}
    if special is not None:
        ids = {"bos_token_id": special.eos, "eos_token_id": special.eos, "pad_token_id": special.pad}
    else:
        # GPT2Config's default ids (50256) lie outside a small vocabulary; None is honest.
        ids = {"bos_token_id": None, "eos_token_id": None}
    try:
        return GPT2Config(vocab_size=vocab_size, n_positions=n_positions, resid_pdrop=dropout,
                          embd_pdrop=dropout, attn_pdrop=dropout, **{**FROM_SCRATCH_GPT2, **ids, **fields})
    except (TypeError, ValueError) as e:
        raise CoconutError(f"bad GPT-2 config {fields}: {e}") from None


def build_backbone(preset_or_config: str | dict[str, Any], vocab_size: int, n_positions: int = 1024,
                   special: SpecialTokens | None = None):
    """A randomly initialised `GPT2LMHeadModel` (from scratch) for a preset name or config dict.

    `special` sets the config's eos/pad ids so that HF tools see the project's tokens.
    """
    from transformers import GPT2LMHeadModel

    if n_positions < 1 or vocab_size < 1:
        raise CoconutError(f"vocab_size ({vocab_size}) and n_positions ({n_positions}) must be positive")
    return GPT2LMHeadModel(gpt2_config(preset_or_config, vocab_size, n_positions, special))


def load_backbone(path_or_id: str | os.PathLike, **kwargs: Any):
    """Load any HF causal LM (local folder or hub id) with `AutoModelForCausalLM`.

    Extra keyword arguments go to `from_pretrained` (e.g. `dtype`, `attn_implementation`). The
    dtype defaults to the checkpoint's own.
    """
    from transformers import AutoModelForCausalLM

    kwargs.setdefault("dtype", "auto")
    try:
        return AutoModelForCausalLM.from_pretrained(str(path_or_id), **kwargs)
    except (OSError, ValueError, KeyError) as e:
        lines = str(e).strip().splitlines()
        first = lines[0] if lines else type(e).__name__
        raise CoconutError(f"cannot load a causal LM from '{path_or_id}': {first}") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub (`HF_ENDPOINT`, or the `HTTPS_PROXY` in between) accepts a connection within `timeout` s.

    Without a network, transformers retries a hub id for most of a minute before it fails; this
    answers in at most `timeout` seconds (the probe runs in a thread, so a hanging DNS lookup is cut
    short too).
    """
    import socket
    import threading
    from urllib.parse import urlparse

    target = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or \
        os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(target if "://" in target else f"http://{target}")
    try:
        host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    except ValueError:  # a malformed port
        return False
    if not host:
        return False
    answered: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def hub_offline() -> bool:
    """True when a hub id can only come from the local cache: `HF_HUB_OFFLINE` is set, or the hub does not answer."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return not hub_reachable()


def to_weights_dtype(model: torch.nn.Module, dtype: torch.dtype, device: torch.device | str | None = None) -> torch.nn.Module:
    """Move `model` to `device` with its weights in `dtype`, keeping RoPE frequencies in fp32.

    `.to(bfloat16)` would round the rotary `inv_freq` buffers too, unlike HF's loading of a bf16 checkpoint
    (what eval and `init_from` of a saved run get), shifting every position's rotation. The trainer, the
    bench and the memory plan all cast through here, so they measure the model that training runs.
    """
    rope = [(m, n, b) for m in model.modules() for n, b in m.named_buffers(recurse=False)
            if n in ("inv_freq", "original_inv_freq") and b.dtype == torch.float32]
    model.to(device, dtype=dtype) if device is not None else model.to(dtype=dtype)
    for module, name, buf in rope:
        setattr(module, name, buf.to(device) if device is not None else buf)
    return model


def resize_for_new_tokens(model, tokenizer, init_from: str = "<<", n_new: int | None = None) -> int:
    """Grow the embeddings to `len(tokenizer)` and initialise the new rows; returns how many.

    The new rows are those past the old matrix, or, with `n_new` (what `add_coconut_tokens`
    returned), the tokenizer's last `n_new` ids: models such as Qwen pad their matrices, so new
    ids can fall inside the old rows. New rows (input embeddings, and the LM head when it is not
    tied to them) copy the embedding of `init_from` when the tokenizer encodes it as one token,
    as the official code does with "<<"; otherwise they take the mean of the other rows.
    """
    old = model.get_input_embeddings().weight.shape[0]
    size = len(tokenizer)
    first = size - n_new if n_new is not None else old
    if size > old:
        model.resize_token_embeddings(size, mean_resizing=False)
    if first >= size:
        return 0
    src = tokenizer.encode(init_from, add_special_tokens=False) if init_from else []
    with torch.no_grad():
        for emb in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())
                    if m is not None}.values():
            w = emb.weight
            if w.shape[0] < size:  # an untied head that does not cover the vocabulary
                continue
            fill = w[src[0]].clone() if len(src) == 1 and src[0] < first else w[:first].mean(0)
            w[first:size] = fill
    return size - first


def build_from_scratch(preset: str, vocab_size: int, n_positions: int, special: SpecialTokens | None = None,
                       arch: str = "gpt2", **shape: Any):
    """A from-scratch backbone: a preset's shape (with `shape` overrides) in the GPT-2 or Llama architecture.

    `shape` takes n_layer, n_embd, n_head, dropout and activation (None values are ignored). The
    Llama architecture uses the same width, depth and heads with RoPE instead of learned positions,
    RMSNorm, a SwiGLU MLP of width 4*n_embd*2/3 rounded up to 64, and tied embeddings.
    `activation` names an HF activation (`transformers.activations.ACT2FN`): GPT-2's
    `activation_function` (default "gelu_pytorch_tanh") or Llama's `hidden_act` (default "silu").
    """
    if preset not in PRESETS:
        raise CoconutError(f"unknown model preset '{preset}'; choose one of {sorted(PRESETS)}")
    fields = {**PRESETS[preset], **{k: v for k, v in shape.items() if v is not None}}
    activation = fields.pop("activation", None)
    if activation is not None:
        from transformers.activations import ACT2FN

        if activation not in ACT2FN:
            raise CoconutError(f"unknown activation '{activation}'; choose one of {sorted(ACT2FN)}")
    width, heads = int(fields["n_embd"]), int(fields["n_head"])
    if width % heads:
        raise CoconutError(f"config 'n_head': n_embd={width} is not divisible by n_head={heads} (each head gets "
                           f"n_embd/n_head dimensions); choose a divisor of {width}")
    if arch == "gpt2":
        if activation is not None:
            fields["activation_function"] = activation
        return build_backbone(fields, vocab_size, n_positions, special)
    if arch != "llama":
        raise CoconutError(f"unknown architecture '{arch}'; choose gpt2 or llama")
    from transformers import LlamaForCausalLM

    ids = {"bos_token_id": special.eos, "eos_token_id": special.eos, "pad_token_id": special.pad} if special else {}
    config = tiny_llama_config(
        vocab_size, hidden_size=width, intermediate_size=-(-width * 8 // 3 // 64) * 64,
        num_hidden_layers=int(fields["n_layer"]), num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=n_positions, tie_word_embeddings=True, attention_dropout=float(fields.get("dropout", 0.0)),
        **({"hidden_act": activation} if activation is not None else {}), **ids,
    )
    return LlamaForCausalLM(config)


def tiny_llama_config(vocab_size: int, **overrides: Any):
    """A Llama-style config small enough for unit tests: RoPE, RMSNorm, GQA (4 query, 2 KV heads)."""
    from transformers import LlamaConfig

    fields = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0,
                  tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    fields.update(overrides)
    return LlamaConfig(vocab_size=vocab_size, **fields)


def build_tiny_llama(vocab_size: int, **overrides: Any):
    """A randomly initialised `LlamaForCausalLM` from `tiny_llama_config`."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(tiny_llama_config(vocab_size, **overrides))

"""What a run starts from: the tokenizer and the `CoconutLM` a config asks for.

    model, tokenizer = build_model(cfg, texts_of_the_training_data, symbolic=False)

A from-scratch preset (backbone.PRESETS) with a tokenizer built from the training data, an HF
model folder or hub id with Coconut's tokens added, or a coconut-lm checkpoint (`init_from`);
with `lora_r > 0`, LoRA adapters on the pretrained one (`coconut_lm.model.lora`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.registry import get_task
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training.config import TrainConfig

#: Previous inputs a from-scratch preset's token shift mixes in. One was best for recall and for symbolic
#: ProsQA without latent markers; wider shifts bridge markers but learn slower (docs/experiments.md).
DEFAULT_TOKEN_SHIFT = 1
#: Presets of the paper's size follow the paper: no token shift unless a config asks for one.
PAPER_SIZE_PRESETS = ("gpt2-124m",)


def build_model(cfg: TrainConfig, train_texts: list[str], symbolic: bool = False):
    """The tokenizer and a fresh `CoconutLM` for this config (from a preset, an HF model, or init_from).

    A from-scratch preset builds its tokenizer from `train_texts` unless `tokenizer` names an HF one:
    one token per symbol when `symbolic` (the training data is in the symbolic form), byte-level BPE
    for GSM8k (open vocabulary), word-level for ProsQA and ProntoQA (closed vocabularies).
    """
    from coconut_lm.data.tokenizer import (
        BUILT_TOKENIZERS,
        add_coconut_tokens,
        build_bpe_tokenizer,
        build_symbol_tokenizer,
        build_word_tokenizer,
        load_base_tokenizer,
        special_token_ids,
    )
    from coconut_lm.model.backbone import PRESETS, build_from_scratch, hub_offline, load_backbone, resize_for_new_tokens
    from coconut_lm.model.coconut import CoconutLM

    if cfg.init_from:
        model, tok, meta = ckpt.load_model(cfg.init_from, "config 'init_from':")
        if meta.task != cfg.task:
            raise CoconutError(f"config 'init_from': {cfg.init_from} was trained on {meta.task}, this run is "
                               f"task={cfg.task}; its tokenizer and answers belong to the other task (start from "
                               f"a {cfg.task} checkpoint)")
        _check_activation(cfg, model.base.config, f"init_from={cfg.init_from}")
        if cfg.eot_classifier and model.eot_head is None:
            grown = CoconutLM(model.base, model.tokens, eot_classifier=True)
            grown.token_shift, grown.shift_width = model.token_shift, model.shift_width
            grown.shift_thoughts = model.shift_thoughts
            if "lora_info" in model.__dict__:  # the same adapted backbone
                grown.__dict__["lora_info"] = model.__dict__["lora_info"]
            model = grown
        if cfg.shift_thoughts is not None:
            model.shift_thoughts = cfg.shift_thoughts
        return _with_lora(cfg, model, str(ckpt.resolve_checkpoint(cfg.init_from).resolve()), ()), tok
    if cfg.model in PRESETS:
        if cfg.lora_r:
            raise CoconutError(f"config 'lora_r': LoRA adapts a pretrained model, and model={cfg.model} is a preset "
                               f"trained from scratch; give model=PATH_OR_HF_ID or init_from=CHECKPOINT")
        kind = cfg.tokenizer or ("symbol" if symbolic else get_task(cfg.task).tokenizer)
        if kind == "bpe":  # natural language: subwords, so validation words are never unknown
            tok = build_bpe_tokenizer(train_texts, cfg.bpe_vocab_size)
        elif kind in BUILT_TOKENIZERS:
            tok = (build_symbol_tokenizer if kind == "symbol" else build_word_tokenizer)(train_texts)
        else:
            tok = load_base_tokenizer(cfg.tokenizer)
            add_coconut_tokens(tok)
        base = build_from_scratch(cfg.model, len(tok), cfg.max_length, special_token_ids(tok), arch=cfg.arch,
                                  n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head, dropout=cfg.dropout,
                                  activation=cfg.activation)
    else:
        if cfg.activation is not None:
            raise CoconutError(f"config 'activation': sets a from-scratch preset's activation; model={cfg.model} "
                               f"brings its own (leave activation unset)")
        if cfg.tokenizer in BUILT_TOKENIZERS:
            raise CoconutError(f"config 'tokenizer': '{cfg.tokenizer}' builds a tokenizer for a from-scratch preset; "
                               f"model={cfg.model} brings its own (leave tokenizer unset, or name an HF tokenizer)")
        local = Path(cfg.model).exists()
        if local and not (Path(cfg.model) / "config.json").is_file():
            raise CoconutError(f"config 'model': {cfg.model} is not a Hugging Face model folder (no config.json); "
                               f"give a folder saved with save_pretrained, or a preset ({', '.join(PRESETS)})")
        near = [] if local else difflib.get_close_matches(cfg.model, PRESETS, n=1, cutoff=0.75)
        if near:
            raise CoconutError(f"config 'model': '{cfg.model}' is neither a preset ({', '.join(PRESETS)}) nor a local "
                               f"folder; did you mean '{near[0]}'?")
        # Without a network only the local cache can serve a hub id: ask it alone, or transformers retries for ~50 s.
        offline = not local and hub_offline()
        cache_only = {"local_files_only": True} if offline else {}
        try:
            tok = load_base_tokenizer(cfg.tokenizer or cfg.model, **cache_only)
            base = load_backbone(cfg.model, **cache_only)
        except CoconutError as e:
            if local:
                raise
            why = (f"there is no network (HF_HUB_OFFLINE is set, or the hub does not answer) and it is not in the "
                   f"local Hugging Face cache; download it where there is a network and pass its local folder "
                   f"(model=/path/to/{Path(cfg.model).name})") if offline else str(e)
            raise CoconutError(f"config 'model': '{cfg.model}' is neither a preset ({', '.join(PRESETS)}) nor a local "
                               f"folder, and loading it as a hub id failed: {why}") from None
        old_rows = base.get_input_embeddings().weight.shape[0]
        n_new = add_coconut_tokens(tok)
        resize_for_new_tokens(base, tok, n_new=n_new)
        # The tokens just added, and any matrix row that is new: neither has a trained value in the base.
        new_rows = base.get_input_embeddings().weight.shape[0]
        added = sorted({*range(len(tok) - n_new, len(tok)), *range(old_rows, new_rows)})
    small = cfg.model in PRESETS and cfg.model not in PAPER_SIZE_PRESETS
    shift = cfg.token_shift if cfg.token_shift is not None else (DEFAULT_TOKEN_SHIFT if small else 0)
    model = CoconutLM(base, special_token_ids(tok), eot_classifier=cfg.eot_classifier, token_shift=shift,
                      shift_thoughts=True if cfg.shift_thoughts is None else cfg.shift_thoughts)
    if cfg.model in PRESETS:
        return model, tok
    return _with_lora(cfg, model, cfg.model if not Path(cfg.model).exists() else str(Path(cfg.model).resolve()),
                      added), tok


def _with_lora(cfg: TrainConfig, model, base: str, added_rows: Sequence[int]):
    """`model` as `lora_r` asks: LoRA adapters on `base` (model=, or init_from's folder), or every weight training.

    The trained embedding rows are those of `<bot>`, `<eot>`, `<latent>`, `<pause>` and of `added_rows`
    (what this run added to the base's vocabulary). An `init_from` checkpoint with adapters goes on with
    them when the settings match, and is merged into full weights when `lora_r=0`.
    """
    from coconut_lm.model.lora import LoraInfo, apply_lora, default_targets, lora_info, merge_lora

    have = lora_info(model)
    if have is not None and not cfg.lora_r:
        merge_lora(model)
        return model
    if not cfg.lora_r:
        return model
    targets = tuple(t.strip() for t in cfg.lora_targets.split(",") if t.strip()) if cfg.lora_targets \
        else default_targets(model.base)
    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2.0 * cfg.lora_r
    if have is not None:
        if (have.r, have.alpha, have.dropout, have.targets) != (cfg.lora_r, alpha, cfg.lora_dropout, targets):
            raise CoconutError(f"config 'init_from': {cfg.init_from} holds LoRA adapters with r={have.r}, "
                               f"alpha={have.alpha:g}, dropout={have.dropout:g}, targets={','.join(have.targets)}; "
                               f"train them on with the same lora_* settings, or set lora_r=0 to merge them and "
                               f"train every weight")
        return model
    tk = model.tokens
    rows = tuple(sorted({tk.bot, tk.eot, tk.latent, tk.pause, *added_rows}))
    vocab_rows = model.base.get_input_embeddings().weight.shape[0]
    apply_lora(model, LoraInfo(r=cfg.lora_r, alpha=alpha, dropout=cfg.lora_dropout, targets=targets, base=base,
                               rows=rows, vocab_rows=vocab_rows))
    return model


def _check_activation(cfg: TrainConfig, base_config: Any, source: str) -> None:
    """`activation`, if set, must be the activation the loaded weights were trained with."""
    if cfg.activation is None:
        return
    has = getattr(base_config, "activation_function", None) or getattr(base_config, "hidden_act", None)
    if has != cfg.activation:
        raise CoconutError(f"config 'activation': '{cfg.activation}', but {source} was trained with '{has}' "
                           f"(leave activation unset to keep it)")

"""A checkpoint as one self-contained folder: LoRA adapters and token rows merged into the backbone.

    coconut-lm export runs/llama_lora/best --merge --out models/llama_coconut
    coconut-lm train CONFIG model=models/llama_coconut       # an ordinary HF model folder with its tokenizer
    coconut-lm eval models/llama_coconut --data FILE --out DIR  # and still a coconut-lm checkpoint (coconut.json)

The folder is what a full fine-tuning run saves: `AutoModelForCausalLM.from_pretrained` loads it alone,
and its `coconut.json` keeps the run's settings (method, evaluation thoughts, the `<eot>` classifier and
token shift, which a plain HF model has no place for: `model=DIR` starts without them, `init_from=DIR`
keeps them). A checkpoint without adapters is written as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from coconut_lm.eval.outputs import check_out_dir
from coconut_lm.training import checkpoint as ckpt


def export_merged(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write `checkpoint` (a checkpoint folder or a run folder's best/) to `out`, a new or empty folder, with its
    adapters merged; returns `out`."""
    from coconut_lm.model.files import read_meta
    from coconut_lm.model.lora import merge_lora

    target = check_out_dir(out, False, "export")
    source = ckpt.resolve_checkpoint(checkpoint)
    model, tokenizer, _ = ckpt.load_model(source)
    merge_lora(model)
    meta = read_meta(source)  # as recorded, fields of newer versions included
    return ckpt.save_checkpoint(target, lambda tmp: model.save_pretrained(tmp, meta=meta), tokenizer)

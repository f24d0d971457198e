"""Training configuration: one typed dataclass, loaded from YAML with `key=value` overrides.

    cfg = load_config("configs/prosqa_coconut.yaml", ["lr=3e-4", "num_epochs=10"])

Every field is documented below (`coconut-lm train --help-config` prints them). An unknown key is
an error that names it and suggests the nearest valid one. The official Coconut code's YAML files
load too (`coconut: True`, `cot`, `no_thoughts`, `no_cot`, `batch_size_training`, ...): their keys
are mapped onto these fields by `official_config.from_official`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from coconut_lm.errors import CoconutError
from coconut_lm.model.compiled import COMPILE_MODES
from coconut_lm.model.shift_modes import SHIFT_THOUGHTS_WORDS, is_shift_thoughts
from coconut_lm.recipe.curriculum import ScheduleConfig
from coconut_lm.recipe.methods import LayoutConfig, get_method
from coconut_lm.training.official_config import from_official, is_official

#: What `precision` accepts (bf16-weights: bf16 weights, fp32 master copies in the optimizer; coconut_lm.training.master).
PRECISIONS = ("auto", "fp32", "bf16", "bf16-weights")
#: The largest learning rate accepted: AdamW moves every weight by about lr per step, so past 1 a run only diverges.
MAX_LR = 1.0


def _f(default: Any, help: str, resume: bool = False, **kw: Any) -> Any:
    """A documented field; `resume`: a resumed run must have the same value (it shapes the data order or layout)."""
    return field(default=default, metadata={"help": help, "resume": resume}, **kw)


def section(cfg: TrainConfig, cls: type) -> Any:
    """The sub-config `cls` (e.g. `LayoutConfig`) with its fields' values from the flat config."""
    return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


@dataclass
class TrainConfig:
    """Everything a training run needs. The resolved config is saved in every run folder.

    The layout and schedule fields take their defaults from `LayoutConfig` and `ScheduleConfig`,
    which `section` builds from this flat config: each value is defined once.
    """

    # --- data
    task: str = _f("prosqa", "prosqa | prontoqa | gsm8k (or a registered task): picks how answers are parsed and compared", resume=True)
    train_path: str = _f("", "training data, common-format JSON (coconut-lm data ...)", resume=True)
    val_path: str = _f("", "validation data, common-format JSON")
    val_max_examples: int | None = _f(None, "use only the first N validation examples (None: all)")
    fresh_data: str = _f("", "draw a new training set every epoch with these `coconut-lm data` arguments, e.g. 'prosqa --format symbolic --nodes 12' or 'prontoqa --format symbolic --relabel' (as many examples as the epoch visits; seed 10**9 + seed*10**6 + epoch, so keep val/test seeds below 10**9); '': train_path every epoch", resume=True)
    relabel_every_epoch: bool = _f(False, "symbolic data only: draw new names (ProsQA: node names; ProntoQA: concept and entity names) and a new edge or rule order for every training example at every epoch", resume=True)
    # --- model
    model: str = _f("tiny", "a preset trained from scratch (micro, mini, tiny, small, gpt2-124m) or an HF folder / hub id", resume=True)
    arch: str = _f("gpt2", "architecture of a from-scratch preset: gpt2 (learned positions) or llama (RoPE, RMSNorm, SwiGLU)")
    n_layer: int | None = _f(None, "override the preset's number of layers")
    n_embd: int | None = _f(None, "override the preset's width")
    n_head: int | None = _f(None, "override the preset's attention heads")
    dropout: float | None = _f(None, "override the preset's dropout")
    activation: str | None = _f(None, "override a from-scratch preset's MLP activation (an HF activation name): gpt2's gelu_pytorch_tanh (GPT-2's tanh GELU, fused), llama's silu; gelu (exact erf GELU) makes a 2x128 CPU step 1.03-1.12x faster (docs/performance.md)", resume=True)
    tokenizer: str | None = _f(None, "HF tokenizer folder/id, or one built from the training data for presets: word | symbol | bpe; None: the pretrained model's own, else symbol for symbolic data, bpe (byte-level BPE) for gsm8k, word otherwise")
    bpe_vocab_size: int = _f(4096, "vocabulary size of a byte-level BPE tokenizer built from the training data (tokenizer=bpe)")
    init_from: str | None = _f(None, "start from this coconut-lm checkpoint's weights (e.g. a CoT model for GSM8k Coconut)")
    token_shift: int | None = _f(None, "add W [x_{t-1}; ..; x_{t-K}] to every backbone input x_t, K = this (docs/methods.md); 0: off; None: 1 for the small from-scratch presets, 0 for gpt2-124m (the paper's size) and HF models", resume=True)
    shift_thoughts: bool | str | None = _f(None, "which token-shift paths pass through thought positions: true: both, a thought receives (its input h + W x_prev) and sends (W h on the next thought or the answer's first position); false: neither, the faithful variant, thoughts enter exactly as h and are nobody's predecessor; receive: only the first; send: only the second (docs/methods.md); None: init_from's choice, else true", resume=True)
    max_length: int = _f(512, "longest sequence allowed (position table size for presets); longer examples are an error")
    # --- LoRA (pip install 'coconut-lm[peft]'; docs/bigger_models.md)
    lora_r: int = _f(0, "rank of LoRA adapters on a pretrained model (model=PATH_OR_HF_ID or init_from); 0: off, every weight trains. With LoRA only the adapters, the embedding rows of <bot>, <eot>, <latent>, <pause> and of any token added to the base (a pad or eos it lacked), and the <eot> classifier and token shift train; checkpoints hold just those and the base's path", resume=True)
    lora_alpha: float | None = _f(None, "LoRA scale: the update is (lora_alpha / lora_r) B A x; None: 2 * lora_r", resume=True)
    lora_dropout: float = _f(0.0, "dropout on the input of each LoRA branch, in [0, 1)", resume=True)
    lora_targets: str | None = _f(None, "comma-separated layer names (or dotted suffixes) inside the transformer blocks that get adapters, e.g. q_proj,v_proj; None: every linear layer of the blocks (GPT-2: c_attn,c_proj,c_fc; Llama, Qwen2/3, Mistral, Gemma 2/3, OLMo 2, SmolLM3: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; Phi-3: qkv_proj,o_proj,gate_up_proj,down_proj)", resume=True)
    # --- method
    method: str = _f("coconut", "cot | no_cot | icot | pause | coconut | no_curriculum | no_thought | pause_as_thought", resume=True)
    c_thought: int = _f(LayoutConfig.c_thought, "continuous thoughts per reasoning step (c)", resume=True)
    max_latent_stage: int = _f(LayoutConfig.max_latent_stage, "last curriculum stage that adds thoughts; later stages drop all language steps", resume=True)
    epochs_per_stage: int = _f(ScheduleConfig.epochs_per_stage, "epochs per curriculum stage", resume=True)
    pad_latent_to_max: bool = _f(LayoutConfig.pad_latent_to_max, "past the last stage, max_latent_stage*c thoughts even for a chain with fewer steps; false: capped at its step count (stages up to max_latent_stage always get k*c, as the official code)", resume=True)
    uniform_prob: float = _f(ScheduleConfig.uniform_prob, "stage mixing: probability that an example gets a stage drawn uniformly from 0..n_steps", resume=True)
    pause_tokens: int = _f(LayoutConfig.pause_tokens, "pause tokens for the `pause` method")
    latent_markers: bool = _f(LayoutConfig.latent_markers, "put <bot>/<eot> around the thoughts (the paper); false: thoughts follow the question directly (Zhu et al. 2025's symbolic layout)", resume=True)
    icot_delta: float = _f(ScheduleConfig.icot_delta, "iCoT: chain tokens removed per epoch")
    icot_lambda: float = _f(ScheduleConfig.icot_lambda, "iCoT: removal smoothing, extra removal o with P(o) ∝ exp(-λo); 0 disables")
    icot_max_removed: int = _f(ScheduleConfig.icot_max_removed, "iCoT: once this many tokens are scheduled for removal, remove the whole chain")
    eot_classifier: bool = _f(False, "train a binary head on the latent state that decides when to emit <eot>")
    eot_loss_weight: float = _f(1.0, "weight of the <eot> classifier's loss")
    eval_thoughts: int | None = _f(None, "thoughts (or pauses) used at evaluation; None: the final stage's count, max_latent_stage*c")
    eval_use_classifier: bool = _f(False, "at evaluation, let the <eot> classifier end latent mode instead of a fixed count")
    max_thoughts: int = _f(16, "cap on thoughts when the classifier decides")
    # --- optimisation
    num_epochs: int = _f(50, "training epochs")
    start_epoch: int = _f(0, "epoch to start at (e.g. begin the curriculum at stage 1 from a CoT checkpoint)")
    batch_size: int = _f(128, "global (effective) batch size per optimizer step, over all ranks and accumulation", resume=True)
    micro_batch_size: int = _f(32, "examples per forward pass on one device; accumulation = batch_size / (world * micro)", resume=True)
    lr: float = _f(1e-4, "peak learning rate (AdamW); a finite number in (0, 1]")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    betas: tuple[float, float] = _f((0.9, 0.999), "AdamW betas")
    warmup_steps: int = _f(0, "linear warm-up steps after every optimizer reset")
    lr_schedule: str = _f("constant", "constant | cosine (cosine decays over the whole run to 10% of lr)")
    grad_clip: float = _f(1.0, "clip the global gradient norm to this value; 0 disables")
    reset_optimizer: str = _f(ScheduleConfig.reset_optimizer, "stage: reset AdamW at each curriculum stage or iCoT removal; epoch: every epoch (official code); never")
    precision: str = _f("auto", "auto: bf16 on GPU, fp32 on CPU | fp32: fp32 weights and compute | bf16: bf16 autocast over fp32 weights (weights, gradients and AdamW state fp32) | bf16-weights: the weights themselves in bf16 (2 bytes a parameter), bf16 forward and backward, and AdamW stepping fp32 master copies of the trainable weights (4 bytes each, saved in the checkpoint's optimizer state so resume is exact) with fp32 moments; with LoRA the frozen base is bf16 and the adapters and token rows train through fp32 masters; needs a device with bf16 (CPU, or a GPU from Ampere on) and distributed=ddp (docs/bigger_models.md)")
    seed: int = _f(0, "seed for weights, data order, stage mixing and iCoT smoothing", resume=True)
    max_steps_per_epoch: int | None = _f(None, "cap optimizer steps per epoch (quick experiments)", resume=True)
    length_buckets: int = _f(0, "regroup each run of N global batches so every batch holds examples of similar length (less padding); 0: off", resume=True)
    max_train_seconds: float | None = _f(None, "stop after this much training time (then validate and checkpoint; --resume continues)")
    # --- evaluation, checkpoints, logging
    eval_every: int = _f(1, "validate every N epochs (and after the last)")
    eval_batch_size: int = _f(64, "generation batch size for validation")
    max_new_tokens: int = _f(64, "generation budget per example")
    out_dir: str = _f("runs/run", "run folder: checkpoints, metrics.jsonl, config.yaml; a run holds train.lock (pid, host) in it while it trains, so a second train into it is refused")
    save_every_steps: int = _f(0, "also checkpoint every N optimizer steps inside an epoch (0: at epoch ends only)")
    overwrite: bool = _f(False, "allow training into a non-empty out_dir without --resume (its old checkpoints and metrics are deleted)")
    keep_last: int = _f(1, "step checkpoints to keep for --resume (at least 1), besides best/")
    num_workers: int = _f(0, "DataLoader worker processes for batch assembly")
    report_to: str = _f("none", "none | tensorboard | wandb (optional extras)")
    distributed: str = _f("ddp", "ddp | fsdp: how torchrun runs shard the model")
    gradient_checkpointing: bool = _f(False, "recompute each transformer block in backward instead of keeping its activations (coconut_lm.model.checkpointing): the same loss and gradients, about one more forward of compute, and a step's activations fall to one (B, T, H) input per block plus the KV cache; for models that do not fit otherwise (docs/bigger_models.md, `coconut-lm bench --memory-plan`)")
    compile: bool = _f(False, "torch.compile each transformer block (coconut_lm.model.compiled; a failing backend falls back to eager); pays on GPU, not on CPU (docs/performance.md)")
    compile_mode: str = _f("default", "torch.compile mode with compile=true: default | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs")
    compile_backend: str = _f("inductor", "torch.compile backend with compile=true: inductor (which compile_mode tunes), or e.g. aot_eager (graph capture only, to debug a compile problem)")
    prune_last_block: bool | None = _f(None, "run the last transformer block's query, attention output and MLP only at the positions the losses read (labels, the position before each thought, the <eot> classifier's decisions; keys and values everywhere): the same loss and gradients up to float rounding, 1.4-1.7x faster train steps at the official-size ProsQA shapes on CPU (dropout draws other samples) (coconut_lm.model.last_block, docs/performance.md); GPT-2 backbones only; null: on for a GPT-2 backbone on CPU without gradient_checkpointing or compile, off otherwise (unmeasured on GPU); true: on (refused with gradient_checkpointing, compile or another backbone family)")
    log_every: int = _f(10, "optimizer steps between metrics.jsonl training rows")

    def validate(self) -> None:
        """Check values that types alone cannot; raise CoconutError naming the field."""
        from coconut_lm.recipe.methods import METHODS
        from coconut_lm.tasks.registry import TASKS

        choices = {
            "task": tuple(TASKS),
            "method": tuple(METHODS),
            "lr_schedule": ("constant", "cosine"),
            "reset_optimizer": ("stage", "epoch", "never"),
            "precision": PRECISIONS,
            "report_to": ("none", "tensorboard", "wandb"),
            "distributed": ("ddp", "fsdp"),
            "arch": ("gpt2", "llama"),
            "compile_mode": COMPILE_MODES,
        }
        for f in fields(self):  # NaN passes every comparison below, and inf most: refuse both first
            values = getattr(self, f.name) if f.name == "betas" else (getattr(self, f.name),)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise CoconutError(f"config '{f.name}': must be a finite number, got {getattr(self, f.name)!r}")
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise CoconutError(f"config '{name}': '{getattr(self, name)}' is not one of {', '.join(allowed)}")
        at_least = {
            1: ("batch_size", "micro_batch_size", "num_epochs", "eval_every", "eval_batch_size", "max_new_tokens",
                "max_length", "log_every", "keep_last", "max_steps_per_epoch", "n_layer", "n_embd", "n_head",
                "val_max_examples"),
            0: ("c_thought", "max_latent_stage", "epochs_per_stage", "pause_tokens", "warmup_steps", "start_epoch",
                "save_every_steps", "max_thoughts", "num_workers", "grad_clip", "weight_decay", "icot_delta",
                "icot_lambda", "icot_max_removed", "eot_loss_weight", "token_shift", "length_buckets", "lora_r"),
        }
        if self.bpe_vocab_size < 263:
            raise CoconutError(f"config 'bpe_vocab_size': must be >= 263 (256 bytes and 7 special tokens), "
                               f"got {self.bpe_vocab_size}")
        for bound, names in at_least.items():
            for name in names:
                value = getattr(self, name)
                if value is not None and value < bound:
                    raise CoconutError(f"config '{name}': must be >= {bound}, got {value}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise CoconutError(f"config 'betas': expects two numbers in [0, 1), got {list(self.betas)}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise CoconutError(f"config 'dropout': must be in [0, 1), got {self.dropout}")
        if self.shift_thoughts is not None and not is_shift_thoughts(self.shift_thoughts):
            raise CoconutError(f"config 'shift_thoughts': {self.shift_thoughts!r} is not one of "
                               f"{', '.join(SHIFT_THOUGHTS_WORDS)}")
        self._validate_lora()
        if self.activation is not None:
            from transformers.activations import ACT2FN

            if self.activation not in ACT2FN:
                raise CoconutError(f"config 'activation': '{self.activation}' is not an HF activation "
                                   f"(transformers.activations.ACT2FN), e.g. gelu, gelu_pytorch_tanh, relu, silu")
        if self.gradient_checkpointing and self.compile:
            raise CoconutError("config 'gradient_checkpointing': does not combine with compile=true (dynamo cannot trace "
                               "a checkpointed block's KV-cache replay and would run it eagerly); choose one")
        if self.prune_last_block and (self.gradient_checkpointing or self.compile):
            raise CoconutError("config 'prune_last_block': does not combine with gradient_checkpointing or compile (both "
                               "wrap the blocks it prunes); set it to false or null")
        if self.precision == "bf16-weights" and self.distributed == "fsdp":
            raise CoconutError("config 'precision': bf16-weights keeps fp32 masters beside whole bf16 weights, which "
                               "FSDP2 shards; use distributed=ddp with it, or precision=bf16 under FSDP")
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise CoconutError(f"config 'max_train_seconds': must be > 0, got {self.max_train_seconds}")
        if self.eot_classifier and not get_method(self.method).continuous:
            raise CoconutError(f"config 'eot_classifier': method {self.method} has no continuous thoughts, so no latent "
                               f"state to classify (coconut and no_curriculum have)")
        if self.eval_use_classifier and not self.eot_classifier:
            raise CoconutError("config 'eval_use_classifier': needs eot_classifier=true (the classifier must be trained)")
        if not 0.0 <= self.uniform_prob <= 1.0:
            raise CoconutError(f"config 'uniform_prob': must be in [0, 1], got {self.uniform_prob}")
        slots = {"coconut": "thoughts", "no_curriculum": "thoughts", "pause_as_thought": "pause slots"}
        needed = {"pause": ("pause_tokens",), **{m: ("c_thought", "max_latent_stage") for m in slots}}
        for name in needed.get(self.method, ()):
            if getattr(self, name) == 0:
                what = slots.get(self.method, "pause tokens")
                raise CoconutError(f"config '{name}': 0 leaves method={self.method} with no {what}; use >= 1")
        if self.start_epoch >= self.num_epochs:
            raise CoconutError(f"config 'start_epoch': {self.start_epoch} is not below num_epochs={self.num_epochs}, "
                               f"so no epoch would train (raise num_epochs or lower start_epoch)")
        if self.eval_thoughts is not None and self.eval_thoughts < 0:
            raise CoconutError(f"config 'eval_thoughts': must be >= 0, got {self.eval_thoughts}")
        if not self.out_dir.strip():
            raise CoconutError("config 'out_dir': empty; give the run folder (e.g. out_dir=runs/my_run)")
        if not 0 < self.lr <= MAX_LR:
            raise CoconutError(f"config 'lr': must be > 0 and at most {MAX_LR} (AdamW moves each weight by about lr "
                               f"per step), got {self.lr}")
        if self.eval_use_classifier and self.max_thoughts < 1:
            raise CoconutError("config 'max_thoughts': must be >= 1 with eval_use_classifier=true (the classifier "
                               "reads the state after the first thought), got 0")

    def _validate_lora(self) -> None:
        if not 0.0 <= self.lora_dropout < 1.0:
            raise CoconutError(f"config 'lora_dropout': must be in [0, 1), got {self.lora_dropout}")
        if self.lora_alpha is not None and self.lora_alpha <= 0:
            raise CoconutError(f"config 'lora_alpha': must be > 0, got {self.lora_alpha}")
        if self.lora_targets is not None and not any(t.strip() for t in self.lora_targets.split(",")):
            raise CoconutError("config 'lora_targets': empty; name layers (e.g. q_proj,v_proj) or leave it unset "
                               "for the family's default")
        if not self.lora_r:
            given = [k for k in ("lora_alpha", "lora_targets") if getattr(self, k) is not None]
            given += ["lora_dropout"] if self.lora_dropout else []
            if given:
                raise CoconutError(f"config '{given[0]}': set, but lora_r=0 (LoRA off); set lora_r to train adapters")
            return
        from coconut_lm.model.lora import require_peft

        require_peft()

    def to_dict(self) -> dict[str, Any]:
        """Plain values for YAML/JSON."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))


def _unknown(key: str, source: str) -> CoconutError:
    near = difflib.get_close_matches(key, FIELD_NAMES, n=1)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return CoconutError(f"{source}: unknown config key '{key}'{hint}")


def _coerce(name: str, value: Any, source: str) -> Any:
    """Convert a YAML or command-line value to the field's declared type (the first of a union's that takes it)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = typing.get_args(hint)
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    optional = union and type(None) in args
    bases = [a for a in args if a is not type(None)] if union else [hint]
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise CoconutError(f"{source}: config '{name}' cannot be empty")
    for base in bases:
        try:
            return _convert(base, value)
        except (TypeError, ValueError):
            pass
    names = " or ".join(getattr(base, "__name__", str(base)) for base in bases)
    raise CoconutError(f"{source}: config '{name}' expects {names}, got {value!r}")


def _convert(base: Any, value: Any) -> Any:
    """`value` as one type of a field; TypeError or ValueError if it is not one."""
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
    if base is float:
        return float(value)
    if base is str:
        return str(value)
    if typing.get_origin(base) is tuple:
        items = yaml.safe_load(value) if isinstance(value, str) else value
        return tuple(float(v) for v in items)
    raise TypeError(f"no conversion to {base}")


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is parsed as YAML (so 1e-4, true, null work)."""
    if "=" not in text:
        raise CoconutError(f"override '{text}' is not key=value")
    key, value = text.split("=", 1)
    key = key.strip()
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Build a TrainConfig from a YAML file (ours or the official format) and `key=value` overrides."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "config"
    if path:
        p = Path(path)
        if not p.is_file():
            raise CoconutError(f"{p}: no such config file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise CoconutError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise CoconutError(f"{p}: expected a mapping of key: value")
        raw = from_official(loaded, source) if is_official(loaded) else loaded
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in FIELD_NAMES:
            raise _unknown(key, source)
        values[key] = _coerce(key, value, source)
    for text in overrides:
        key, value = parse_override(text)
        if key not in FIELD_NAMES:
            raise _unknown(key, "command line")
        values[key] = _coerce(key, value, "command line")
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


def describe_fields() -> str:
    """Every config key with its type, default and meaning, for `--help-config` and the docs."""
    hints = typing.get_type_hints(TrainConfig)
    lines = []
    for f in fields(TrainConfig):
        t = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
        lines.append(f"  {f.name} ({t}, default {f.default!r})\n      {f.metadata['help']}")
    return "\n".join(lines)

"""The memory plan: expected peak memory of one Coconut train step, from a model's config alone.

    coconut-lm bench --memory-plan llama-3.1-8b --batch-size 8 --latents 6 --seq-len 512 --lora-r 16
    plans = memory_plan(load_model_config("llama-3.2-1b"), PlanShape(batch=8, seq_len=512, latents=6))

No weights are read: the parameters are counted on a meta-device model built from the config
(`AutoConfig`, a local folder or JSON file, a from-scratch preset, or one of `KNOWN_CONFIGS`, public
config numbers written out here). The activations are what each block saves for backward, counted
tensor by tensor for the two block layouts (GPT-2: LayerNorm, fused QKV, GELU MLP; Llama and its
descendants: RMSNorm, separate Q/K/V, gated MLP), plus the loss's logits and the K/V buffer that the
thought passes share. `tests/test_memory_plan.py` checks the plan against peaks measured on CPU.

A step's peak is the resident state (weights, AdamW's two moments and, with `precision=bf16-weights`,
the fp32 master copies of the trainable weights) plus the larger of
- the end of the forward: every saved activation, the LM head's gradient (the first one backward
  computes) and the loss's backward temporaries, and
- the optimizer step: every gradient and the optimizer's temporaries (with bf16-weights the gradients
  stay bf16: `MasterAdamW` steps chunks of at most the largest tensor's size, at least 2**24 elements,
  with their fp32 gradients and AdamW's temporaries of one chunk).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError

#: Public configs (their `config.json` numbers on the hub), so the plan needs neither network nor weights.
_LLAMA3 = {"model_type": "llama", "vocab_size": 128256, "hidden_act": "silu", "rms_norm_eps": 1e-5,
           "rope_theta": 500000.0, "max_position_embeddings": 131072}
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {**_LLAMA3, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                     "tie_word_embeddings": True},
    "llama-3.2-3b": {**_LLAMA3, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128,
                     "tie_word_embeddings": True},
    "llama-3.1-8b": {**_LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                     "tie_word_embeddings": False},
}
#: Bytes per element.
FP32, BF16 = 4, 2
#: What `PlanShape.precision` accepts (the trainer's `precision` values but auto).
PLAN_PRECISIONS = ("fp32", "bf16", "bf16-weights")
#: The LM head's loss runs in chunks above this many logits (coconut_lm.model.loss.CE_CHUNK_ELEMENTS).
CE_CHUNK_ELEMENTS = 2**26


@dataclass(frozen=True)
class PlanShape:
    """The step: `batch` rows of `seq_len` tokens, `latents` thoughts each, `answer` supervised tokens each."""

    batch: int
    seq_len: int
    latents: int
    answer: int = 32
    lora_r: int = 16
    precision: str = "fp32"  # fp32 | bf16 (autocast over fp32 weights) | bf16-weights (bf16 weights, fp32 masters)
    device: str = "cuda"  # cuda: AdamW's foreach step copies the moments; cpu: one tensor at a time


@dataclass
class ParamCounts:
    """Parameters of the model (tied matrices once) and what trains with full fine-tuning and with LoRA."""

    total: int
    largest: int  # the largest single tensor
    head: int  # the LM head's matrix (shared with the embedding when tied)
    lora: int  # the adapters' parameters at the plan's rank (plus the added tokens' rows)
    adapted: int = 0  # adapted layers per block


@dataclass
class MemoryPlan:
    """Bytes of one train step. `peak` without, `peak_checkpointed` with gradient checkpointing."""

    weights: int
    gradients: int
    adamw: int
    activations: int
    activations_checkpointed: int
    kv_buffer: int
    loss: int
    autocast_copies: int  # bf16: the block weights' bf16 copies that the matmuls save for backward
    peak: int
    peak_checkpointed: int
    trainable: int = 0
    master: int = 0  # bf16-weights: the fp32 master copies of the trainable weights
    notes: list[str] = field(default_factory=list)


def load_model_config(source: str):
    """An HF `PretrainedConfig` from a `KNOWN_CONFIGS` name, a preset, a model folder, a config JSON, or a hub id."""
    from transformers import AutoConfig

    from coconut_lm.model.backbone import PRESETS, gpt2_config

    if source.lower() in KNOWN_CONFIGS:
        d = dict(KNOWN_CONFIGS[source.lower()])
        return AutoConfig.for_model(d.pop("model_type"), **d)
    if source in PRESETS:
        return gpt2_config(source, vocab_size=50257)
    path = Path(source)
    if path.is_file():
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CoconutError(f"--memory-plan {source}: not a config JSON ({e})") from None
        if "model_type" not in d:
            raise CoconutError(f"--memory-plan {source}: the JSON has no 'model_type'")
        return AutoConfig.for_model(d.pop("model_type"), **d)
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        known = ", ".join([*KNOWN_CONFIGS, *PRESETS])
        raise CoconutError(f"--memory-plan {source}: neither a known config ({known}), a config file, nor a model "
                           f"folder or reachable hub id ({str(e).splitlines()[0][:160]})") from None


def count_parameters(config, lora_r: int, added_tokens: int = 4) -> ParamCounts:
    """Count the parameters of `config`'s causal LM on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from coconut_lm.model.lora import default_targets, target_modules

    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    params = list(base.parameters())  # tied matrices appear once
    head = base.get_output_embeddings().weight
    modules = dict(base.named_modules())
    lora = 0
    names = target_modules(base, default_targets(base))
    for name in names:
        fan_in, fan_out = modules[name].weight.shape  # either order: r * (in + out)
        lora += lora_r * (fan_in + fan_out)
    hidden = base.get_input_embeddings().weight.shape[1]
    tied = head is base.get_input_embeddings().weight
    lora += added_tokens * hidden * (1 if tied else 2)
    return ParamCounts(total=sum(p.numel() for p in params), largest=max(p.numel() for p in params),
                       head=head.numel(), lora=lora, adapted=len(names) // config.num_hidden_layers)


@dataclass(frozen=True)
class _Block:
    """Per-position element counts of one block: what it saves for backward, and its K/V."""

    saved: int  # everything the block saves (its input included), per position
    kept: int  # what a checkpointed block keeps: its input and the K/V pieces the cache holds
    kv: int  # K + V per position (the buffer's width)
    repeat: int  # K + V repeated to every query head (GQA with a padding mask), per key position
    outside: int  # saved outside the blocks per position: the final norm's, RoPE's cos and sin


#: Activations that save only their input (their output is saved by the next matmul); HF's `gelu_new` is
#: written out in Python and saves four intermediates instead.
_UNFUSED_GELU = ("gelu_new",)


def _block(config, lora: bool, adapter_width: int) -> _Block:
    """The block's counts; with LoRA each adapted layer also saves its A output (`adapter_width` = r * layers)."""
    h = config.hidden_size
    if config.model_type == "gpt2":
        # ln_1 in/out, the fused QKV (K and V are views of it), attention out (also c_proj's input), ln_2 in/out;
        # c_fc out and the activation's out (plus gelu_new's intermediates)
        inner = config.n_inner or 4 * h
        mlp = (5 if config.activation_function in _UNFUSED_GELU else 2) * inner
        return _Block(saved=8 * h + mlp + adapter_width, kept=h + 3 * h, kv=2 * h, repeat=0, outside=h)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    q, kv = heads * head_dim, 2 * kv_heads * head_dim
    # two RMSNorms (input, normalised, scaled: 3h each; a frozen scale needs no normalised copy), rotated Q,
    # attention out (also o_proj's input), rotated K and V; the gated MLP: gate out (SiLU's input), SiLU out,
    # up out, their product (down's input)
    norms = (4 if lora else 6) * h
    saved = norms + 2 * q + kv + 4 * config.intermediate_size + adapter_width
    return _Block(saved=saved, kept=h + kv, kv=kv, repeat=2 * q if kv_heads != heads else 0,
                  outside=(1 if lora else 2) * h + 2 * head_dim)


def memory_plan(config, shape: PlanShape) -> dict[str, MemoryPlan]:
    """The plan of one train step for full fine-tuning ("full") and for LoRA ("lora"), in bytes."""
    from coconut_lm.training.master import CHUNK_ELEMENTS

    if shape.precision not in PLAN_PRECISIONS:
        raise CoconutError(f"precision '{shape.precision}' is not one of {', '.join(PLAN_PRECISIONS)}")
    counts = count_parameters(config, shape.lora_r)
    notes = []
    if shape.precision == "bf16":
        notes.append("bf16: autocast over fp32 weights, as the trainer runs on GPU; activations counted at 2 bytes "
                     "(the norms and the residual stream run in fp32, so those are low); not checked against a GPU")
    low = shape.precision == "bf16-weights"
    if low:
        notes.append("bf16-weights: weights, activations and gradients bf16, fp32 masters of the trainable weights "
                     "and fp32 AdamW moments (coconut_lm.training.master); the step makes fp32 gradients one chunk at a time")
    wide = BF16 if low else FP32  # the weights' and the backward's gradients' bytes
    plans = {}
    for mode, trainable in (("full", counts.total), ("lora", counts.lora)):
        lora = mode == "lora"
        block = _block(config, lora, shape.lora_r * counts.adapted if lora else 0)
        acts, kept, recompute, kv_buffer, loss = _activations(config, shape, block)
        weights = wide * (counts.total + (counts.lora if lora else 0))
        master = FP32 * trainable if low else 0
        cast = BF16 * (counts.total - counts.head) if shape.precision == "bf16" else 0  # autocast's weight copies
        grads = wide * trainable
        adamw = 2 * FP32 * trainable
        # AdamW's step: on CUDA (foreach) a copy of the second moments; on CPU, two of the largest tensor.
        # bf16-weights steps in chunks (`master.chunk_elements`): one chunk's fp32 gradients in place of its bf16
        # ones, and AdamW's temporaries (CUDA: a copy of the chunk's second moments; CPU: two of the largest tensor).
        one = min(counts.largest, trainable)
        chunk = min(max(counts.largest, CHUNK_ELEMENTS), trainable)
        temps = (FP32 - BF16) * chunk + FP32 * (chunk if shape.device == "cuda" else 2 * one) if low else \
            FP32 * (trainable if shape.device == "cuda" else 2 * one)
        head_grad = 0 if lora else wide * counts.head  # the first gradient backward computes
        held = head_grad + kv_buffer + cast
        # Checkpointed, backward recomputes one block at a time while the gradients build up (the blocks' and,
        # across the thought passes, those of every layer's K/V) and the loss's memory is gone.
        backward = kv_buffer + cast + kept + grads + max(loss, recompute + kv_buffer)
        plans[mode] = MemoryPlan(
            weights=weights, gradients=grads, adamw=adamw, activations=acts,
            activations_checkpointed=kept + recompute, kv_buffer=kv_buffer, loss=loss, autocast_copies=cast,
            peak=weights + master + adamw + max(acts + loss + held, grads + temps),
            peak_checkpointed=weights + master + adamw + max(kept + loss + held, backward, grads + temps),
            trainable=trainable, master=master, notes=list(notes))
    return plans


def _activations(config, shape: PlanShape, block: _Block) -> tuple[int, int, int, int, int]:
    """Bytes of (activations; with checkpointed blocks, what the forward keeps and one block's recompute;
    the K/V buffer; the loss's logits)."""
    b, t, k = shape.batch, shape.seq_len, shape.latents
    layers, h, vocab = config.num_hidden_layers, config.hidden_size, config.vocab_size
    act = FP32 if shape.precision == "fp32" else BF16
    question = max(t - k - 1 - shape.answer, 1)  # the first pass: the question, up to the first thought
    last = t - question - max(k - 1, 0)  # the last pass: the last thought, <eot> and the answer
    n = b * shape.answer  # supervised positions
    # The blocks: every position once; GQA's K/V repeated to every head over the prefix in each pass of several
    # positions (the first, and the last, which sees all T); the K/V buffer when there are thoughts.
    repeated = block.repeat * b * ((question + t) if k else t) * layers
    blocks = block.saved * b * t * layers + repeated
    kv_buffer = block.kv * b * t * layers if k else 0
    kept = (block.kept if k else h) * b * t * layers
    longest = max(question, last) if k else t  # the longest pass
    one_block = block.saved * b * longest + block.repeat * b * t  # a checkpointed block recomputed in backward
    outside = block.outside * b * t + n * h  # the final norm, RoPE, and the head's input on supervised positions
    chunk = min(n, max(1, CE_CHUNK_ELEMENTS // vocab))
    logits = FP32 * n * vocab if n * vocab <= CE_CHUNK_ELEMENTS else 0  # log-softmax saved for backward
    loss = logits + 2 * FP32 * chunk * vocab  # and, in backward, its gradient and the logits'
    # GPT-2's residual dropouts save a one-byte mask each.
    masks = 2 * h * b * t * layers if getattr(config, "resid_pdrop", 0) else 0
    return act * (blocks + outside) + masks, act * (kept + outside) + masks, act * one_block, act * kv_buffer, loss


def measure_peak(config, shape: PlanShape, mode: str = "full", checkpointing: bool = False, repeats: int = 3) -> int:
    """The measured peak of one CPU train step in bytes (fp32, or bf16-weights with `MasterAdamW`, as
    `shape.precision` says): RSS over what the process held before the model.

    Random weights from `config`, a `bench_batch` of `shape` (its questions vary by +-10 tokens, so the
    plan should use the batch's width: `measured_width`), AdamW with its state made by a first step,
    then the highest of `repeats` sampled step peaks. Irreversibly maps large blocks on their own
    (`bench.memory.map_large_blocks`), so that freed memory leaves the RSS.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from coconut_lm.bench.measures import TrainStep, bench_batch, bench_tokens
    from coconut_lm.bench.memory import RssSampler, map_large_blocks, release_free_memory
    from coconut_lm.model.backbone import to_weights_dtype
    from coconut_lm.model.checkpointing import checkpoint_blocks
    from coconut_lm.model.coconut import CoconutLM

    map_large_blocks()
    sampler = RssSampler()
    batch = bench_batch(shape.batch, _question(shape), shape.latents, shape.answer, config.vocab_size)

    def build() -> TrainStep:
        torch.manual_seed(0)
        model = CoconutLM(AutoModelForCausalLM.from_config(config), bench_tokens(config.vocab_size)).train()
        if mode == "lora":
            from coconut_lm.model.lora import LoraInfo, apply_lora, default_targets

            tk = model.tokens
            apply_lora(model, LoraInfo(r=shape.lora_r, alpha=2.0 * shape.lora_r, dropout=0.0,
                                       targets=default_targets(model.base), base="memory-plan",
                                       rows=(tk.bot, tk.eot, tk.latent, tk.pause), vocab_rows=config.vocab_size,
                                       checksum=0.0))
        if checkpointing:
            checkpoint_blocks(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if shape.precision == "bf16-weights":
            from coconut_lm.training.master import MasterAdamW

            to_weights_dtype(model, torch.bfloat16)
            return TrainStep(model, MasterAdamW(trainable, lr=1e-6), lambda: model(batch.ids, batch.mask, batch.labels).loss,
                             shape.precision)
        opt = torch.optim.AdamW(trainable, lr=1e-6)
        return TrainStep(model, opt, lambda: model(batch.ids, batch.mask, batch.labels).loss, "fp32")

    # A first, discarded round imports the model's code and starts autograd's and torch's machinery, which
    # would otherwise count as the step's memory.
    build()()
    release_free_memory()
    before = sampler.rss()
    step = build()
    step()  # AdamW's state
    peak = 0
    for _ in range(repeats):
        release_free_memory()
        peak = max(peak, sampler.peak_during(step)[1])
    return peak - before


def measured_width(shape: PlanShape) -> int:
    """The width of the batch `measure_peak` builds for `shape`."""
    from coconut_lm.bench.measures import bench_batch

    return bench_batch(shape.batch, _question(shape), shape.latents, shape.answer, 8).ids.shape[1]


def _question(shape: PlanShape) -> int:
    """The mean question length whose batch is about `seq_len` wide (the longest question is up to 10 longer)."""
    return max(shape.seq_len - shape.latents - 2 - shape.answer - 10, 11)


def format_plan(name: str, shape: PlanShape, plans: dict[str, MemoryPlan]) -> str:
    """The plan as a table, one column per mode, in GiB (MiB for a plan under 1 GiB)."""
    unit, size = ("GiB", 2**30) if plans["full"].peak >= 2**30 else ("MiB", 2**20)
    rows = [("weights", "weights"), ("gradients", "gradients"), ("AdamW state", "adamw"),
            ("activations", "activations"), ("activations, checkpointed", "activations_checkpointed"),
            ("K/V buffer across thoughts", "kv_buffer"), ("loss (logits)", "loss"),
            ("bf16 weight copies (autocast)", "autocast_copies"), ("fp32 master weights", "master"), ("peak", "peak"),
            ("peak, gradient_checkpointing", "peak_checkpointed")]
    full, lora = plans["full"], plans["lora"]
    lines = [f"memory plan of one train step, {unit}: {name}, batch {shape.batch}, {shape.seq_len} tokens, "
             f"{shape.latents} thoughts, {shape.answer} supervised tokens a row, {shape.precision}, "
             f"LoRA r {shape.lora_r}, AdamW on {shape.device}",
             f"{'':<32}{'full':>10}{'LoRA':>10}", "-" * 52,
             f"{'trainable parameters (M)':<32}{full.trainable / 1e6:>10.1f}{lora.trainable / 1e6:>10.1f}"]
    lines += [f"{label:<32}{getattr(full, key) / size:>10.2f}{getattr(lora, key) / size:>10.2f}" for label, key in rows]
    lines += [f"note: {n}" for n in full.notes]
    return "\n".join(lines)


def plan_record(name: str, shape: PlanShape, plans: dict[str, MemoryPlan]) -> dict[str, Any]:
    """The plan as JSON-ready values (bytes)."""
    return {"model": name, "shape": asdict(shape), **{mode: asdict(p) for mode, p in plans.items()}}

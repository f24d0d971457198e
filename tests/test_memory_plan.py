"""The memory plan (coconut_lm.bench.memory_plan) against peaks measured on CPU, and its shipped configs.

The plan counts, from the config alone, what a train step holds; here the same step runs with random
weights at small sizes (GPT-2 and Llama blocks, thoughts on, full fine-tuning and LoRA, with and without
gradient checkpointing) and its peak RSS must be within 15% of the plan.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from coconut_lm.bench.memory_plan import (
    KNOWN_CONFIGS,
    PlanShape,
    count_parameters,
    load_model_config,
    measure_peak,
    measured_width,
    memory_plan,
)


def _config(kind: str):
    from transformers import GPT2Config, LlamaConfig

    if kind == "gpt2":  # pretrained GPT-2's gelu_new, dropout off (the plan counts dropout masks only for GPT-2)
        return GPT2Config(vocab_size=8000, n_embd=256, n_layer=4, n_head=4, n_positions=512, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new")
    return LlamaConfig(vocab_size=8000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                       num_attention_heads=8, num_key_value_heads=2)


#: Two cases run by default; the rest of the matrix is slow (each measurement builds and steps two models).
CASES = [pytest.param(kind, mode, ck, id=f"{kind}-{mode}-{'checkpointed' if ck else 'plain'}",
                      marks=() if (kind, mode, ck) in (("gpt2", "full", False), ("llama", "lora", True))
                      else pytest.mark.slow)
         for kind in ("gpt2", "llama") for mode in ("full", "lora") for ck in (False, True)]


@pytest.mark.parametrize(("kind", "mode", "checkpointing"), CASES)
def test_plan_is_within_15_percent_of_the_measured_cpu_peak(kind, mode, checkpointing):
    pytest.importorskip("peft")
    config = _config(kind)
    shape = PlanShape(batch=8, seq_len=160, latents=4, answer=24, lora_r=8, device="cpu")
    shape = replace(shape, seq_len=measured_width(shape))
    plan = memory_plan(config, shape)[mode]
    want = plan.peak_checkpointed if checkpointing else plan.peak
    got = measure_peak(config, shape, mode, checkpointing)
    assert abs(want / got - 1) <= 0.15, (want / 2**20, got / 2**20)


# Parameter counts of the public models (their model cards), which the written-out configs must reproduce.
PUBLIC_PARAMETERS = {"llama-3.2-1b": 1.236e9, "llama-3.2-3b": 3.213e9, "llama-3.1-8b": 8.030e9}


@pytest.mark.parametrize("name", list(KNOWN_CONFIGS))
def test_known_configs_have_their_models_parameter_counts(name):
    counts = count_parameters(load_model_config(name), lora_r=16)
    assert counts.total == pytest.approx(PUBLIC_PARAMETERS[name], rel=2e-3)
    assert counts.adapted == 7 and counts.lora < 0.01 * counts.total


def test_plan_orders_what_it_should():
    """Checkpointing lowers activations; LoRA drops gradients and AdamW; the K/V buffer exists only with thoughts."""
    config = load_model_config("llama-3.2-1b")
    plans = memory_plan(config, PlanShape(batch=4, seq_len=256, latents=6))
    full, lora = plans["full"], plans["lora"]
    assert full.activations_checkpointed < full.activations and full.peak_checkpointed <= full.peak
    assert lora.gradients < full.gradients / 50 and lora.adamw < full.adamw / 50 and lora.peak < full.peak
    assert full.kv_buffer > 0 and memory_plan(config, PlanShape(batch=4, seq_len=256, latents=0))["full"].kv_buffer == 0


def test_memory_plan_command(capsys, tmp_path):
    import json

    from coconut_lm.cli import main

    out = tmp_path / "plan.json"
    assert main(["bench", "--memory-plan", "llama-3.2-1b", "--device", "cuda", "--batch-size", "4", "--latents", "6",
                 "--seq-len", "256", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "peak, gradient_checkpointing" in text and "LoRA" in text
    record = json.loads(out.read_text())
    assert record["shape"]["precision"] == "bf16" and record["full"]["peak"] > record["lora"]["peak"]
    assert main(["bench", "--memory-plan", str(tmp_path / "nothing")]) != 0
    assert "neither a known config" in capsys.readouterr().err

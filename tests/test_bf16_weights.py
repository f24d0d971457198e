"""precision=bf16-weights (coconut_lm.training.master): bf16 weights, AdamW on fp32 masters.

A trainer step equals the scheme computed by hand (fp32 copy, torch AdamW, cast back), the weights stay
bf16 and the optimizer's state fp32, a small update that bf16 rounds away still builds up in the master,
save + resume continues exactly, LoRA keeps its base bf16 and trains, and bad combinations are refused.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from coconut_lm.errors import CoconutError
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training.config import load_config
from coconut_lm.training.master import MasterAdamW
from coconut_lm.training.runlog import read_metrics

ROOT = Path(__file__).resolve().parents[1]
FAST = ["model=micro", "batch_size=8", "micro_batch_size=4", "eval_batch_size=8", "val_max_examples=4",
        "max_new_tokens=8", "log_every=1", "epochs_per_stage=1", "max_latent_stage=1", "num_epochs=2",
        "max_steps_per_epoch=3", "lr=3e-3", "grad_clip=0.5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa

    root = tmp_path_factory.mktemp("bf16w")
    save_examples(generate_prosqa(24, seed=0, workers=1), root / "train.json")
    save_examples(generate_prosqa(4, seed=1, workers=1), root / "val.json")
    return root


def _cfg(data: Path, out: Path, *extra: str):
    return load_config(ROOT / "configs" / "prosqa_coconut_tiny.yaml", [
        f"train_path={data / 'train.json'}", f"val_path={data / 'val.json'}", f"out_dir={out}", *FAST,
        "precision=bf16-weights", *extra])


def _trainer(cfg):
    from coconut_lm.training import dist
    from coconut_lm.training.train import Trainer

    return Trainer(cfg, dist.init_distributed("cpu"), progress=False)


def _first_step(trainer) -> list:
    from coconut_lm.data.pipeline import EpochBatches

    ds = EpochBatches(trainer.train_data, trainer.method, trainer.layout, trainer.schedule, trainer.tokens,
                      trainer.plan, seed=trainer.cfg.seed, epoch=1)  # stage 1: a row with thoughts
    return [ds[i] for i in range(trainer.plan.accumulation)]


def test_a_step_equals_the_fp32_master_scheme_by_hand(data, tmp_path):
    """Weights bf16 before and after, AdamW's moments and the masters fp32, and the stepped weights equal a
    hand-made reference: the same bf16 gradients on an fp32 copy, clipped, stepped by torch AdamW, cast."""
    trainer = _trainer(_cfg(data, tmp_path / "run", "warmup_steps=0"))
    model, cfg = trainer.model, trainer.cfg
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    micro = _first_step(trainer)
    twin = copy.deepcopy(model)  # the reference's forward and backward: the same bf16 model
    trainer.train_step(micro)

    assert all(mb.global_label_tokens > 0 for mb in micro)
    for mb in micro:  # the trainer's loss: each micro-batch's summed token losses over the global batch's count
        out = twin(mb.batch.input_ids, mb.batch.attention_mask, labels=mb.batch.labels)
        (out.loss_sum / mb.global_label_tokens).backward()
    names = [n for n, p in twin.named_parameters() if p.requires_grad]
    master = [p.detach().float().clone().requires_grad_() for p in twin.parameters() if p.requires_grad]
    for m, p in zip(master, (p for p in twin.parameters() if p.requires_grad)):
        m.grad = p.grad.float()
    torch.nn.utils.clip_grad_norm_(master, cfg.grad_clip)
    ref = torch.optim.AdamW(master, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ref.step()

    live = dict(model.named_parameters())
    moved = 0
    for name, m in zip(names, master):
        assert live[name].dtype == torch.bfloat16
        want = m.detach().to(torch.bfloat16)
        # within one bf16 rounding step of the reference (the two runs' sums may round differently)
        assert torch.allclose(live[name].float(), want.float(), rtol=2**-7, atol=1e-6), name
        moved += int(not torch.equal(live[name], twin.get_parameter(name).detach()))
    assert moved > len(names) // 2
    opt = trainer.optimizer
    assert isinstance(opt, MasterAdamW)
    assert all(m.dtype == torch.float32 for m in opt.masters)
    states = [opt.state[m] for m in opt.masters]
    assert states and all(s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32
                          for s in states)
    for m, p in zip(opt.masters, opt.params):  # each weight is its master, rounded
        assert torch.equal(p, m.to(torch.bfloat16))


def test_updates_below_bf16_resolution_accumulate_in_the_master():
    """lr far below bf16's step at 1.0: pure bf16 AdamW never moves the weight, the master scheme does."""
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    opt = MasterAdamW([w], lr=1e-3, weight_decay=0.0)  # each step moves the master by ~1e-3 < 2**-8 / 2
    plain = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    bf16_adamw = torch.optim.AdamW([plain], lr=1e-3, weight_decay=0.0)
    for _ in range(10):
        for p in (w, plain):
            p.grad = torch.ones_like(p)
        opt.step()
        opt.zero_grad()
        bf16_adamw.step()
    assert torch.equal(plain, torch.ones_like(plain))
    assert opt.masters[0][0].item() == pytest.approx(1 - 10e-3, abs=1e-5)
    assert w.dtype == torch.bfloat16 and w[0].item() < 1.0


def test_save_and_resume_give_the_same_steps_as_one_run(data, tmp_path):
    """Checkpoints after every step; drop those after step 4 (mid epoch 2); the resumed run's losses and its
    final bf16 weights equal the uninterrupted run's, bit for bit (the masters come from the checkpoint)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from coconut_lm.training.train import train

        straight = tmp_path / "straight"
        cfg = _cfg(data, straight, "save_every_steps=1", "keep_last=10")
        train(cfg, progress=False, device="cpu")
        resumed = tmp_path / "resumed"
        shutil.copytree(straight, resumed)
        shutil.rmtree(resumed / "best")
        for p in ckpt.list_checkpoints(resumed):
            if int(p.name.split("-")[1]) > 4:
                shutil.rmtree(p)
        saved = torch.load(ckpt.list_checkpoints(resumed)[0] / ckpt.TRAINER_STATE, weights_only=True)
        assert all(m.dtype == torch.float32 for m in saved["optimizer"]["masters"])
        cfg.out_dir = str(resumed)
        assert train(cfg, resume=True, progress=False, device="cpu").global_step == 6
    finally:
        torch.set_num_threads(threads)

    def losses(run):
        return [(r["step"], r["loss"]) for r in read_metrics(run) if r["type"] == "train"]

    assert losses(resumed) == losses(straight) and len(losses(straight)) == 6
    a = load_file(ckpt.list_checkpoints(straight)[0] / "model.safetensors")
    b = load_file(ckpt.list_checkpoints(resumed)[0] / "model.safetensors")
    assert a.keys() == b.keys() and {t.dtype for t in a.values()} == {torch.bfloat16}
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # best/ holds bf16 weights, and `coconut-lm eval` scores it as they are
    from coconut_lm.cli import main

    model, _, _ = ckpt.load_model(straight)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert main(["eval", str(straight), "--data", str(data / "val.json"), "--out", str(tmp_path / "eval"),
                 "--no-progress"]) == 0
    assert (tmp_path / "eval" / "summary.json").is_file()
    # and a resume in another precision is refused, naming the field
    cfg.precision = "fp32"
    with pytest.raises(CoconutError, match="config 'precision'"):
        train(cfg, resume=True, progress=False, device="cpu")


def test_lora_keeps_its_base_bf16_and_trains_the_adapters_through_fp32_masters(tmp_path):
    pytest.importorskip("peft")
    from test_lora import _cfg as lora_cfg
    from test_lora import _save_base

    from coconut_lm.data.pipeline import vocabulary_texts
    from coconut_lm.model.lora import lora_keys
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa

    train, val = generate_prosqa(24, seed=0, workers=1), generate_prosqa(8, seed=1, workers=1)
    save_examples(train, tmp_path / "train.json")
    save_examples(val, tmp_path / "val.json")
    world = {"root": tmp_path, "base": _save_base(tmp_path / "base", vocabulary_texts(train + val), 32)}
    trainer = _trainer(lora_cfg(world, tmp_path / "run", "precision=bf16-weights", "max_steps_per_epoch=2"))
    model = trainer.model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(start) == set(lora_keys(model)) and frozen
    opt = trainer.optimizer
    assert len(opt.masters) == len(start) and all(m.dtype == torch.float32 for m in opt.masters)
    trainer.run()
    for n, p in model.named_parameters():
        assert p.dtype == torch.bfloat16, n
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
        else:
            assert not torch.equal(p, start[n]), n
    assert all(s["exp_avg"].dtype == torch.float32 for s in trainer.optimizer.state.values())
    loaded, _, _ = ckpt.load_model(ckpt.list_checkpoints(tmp_path / "run")[0])  # reloads onto the fp32 base
    live = dict(model.named_parameters())
    for n in start:
        assert torch.equal(loaded.get_parameter(n).to(torch.bfloat16), live[n]), n


def test_bad_combinations_are_one_line_errors_naming_precision(data, tmp_path):
    with pytest.raises(CoconutError, match="config 'precision'") as e:
        _cfg(data, tmp_path / "a", "distributed=fsdp")
    assert "\n" not in str(e.value)
    with pytest.raises(CoconutError, match="config 'precision': 'bf17' is not one of .*bf16-weights"):
        _cfg(data, tmp_path / "b", "precision=bf17")
    opt = MasterAdamW([torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))], lr=1e-3)
    with pytest.raises(CoconutError, match="config 'precision'"):
        opt.load_state_dict(torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))]).state_dict())


def test_bench_times_and_measures_a_bf16_weights_step(tmp_path):
    """`coconut-lm bench --precision bf16-weights` runs the step, memory, eval and loop sections with bf16 weights."""
    import json
    import subprocess
    import sys

    from test_bench import MICRO, RUN

    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-c", RUN, *MICRO, "--precision", "bf16-weights", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["config"]["precision"] == "bf16-weights"
    assert record["step"]["coconut"]["median_s"] > 0 and record["memory"]["coconut"]["peak_MB"] > 0
    assert record["loop"]["examples"] == 2


@pytest.mark.slow
def test_two_gloo_ranks_train_bf16_weights_as_one_process(tmp_path):
    """DDP all-reduces the bf16 gradients and every rank steps the same masters: two ranks log one process's
    losses to bf16 accuracy (the all-reduce sums bf16 values in another order) and save bf16 weights."""
    import os
    import subprocess
    import sys

    from test_train import DDP_SCRIPT, _data

    tp, vp = _data(tmp_path, "prosqa", n=32)
    common = [f"train_path={tp}", f"val_path={vp}", "model=micro", "num_epochs=2", "epochs_per_stage=1",
              "max_latent_stage=1", "batch_size=8", "micro_batch_size=4", "eval_every=100", "log_every=1",
              "max_new_tokens=8", "val_max_examples=4", "precision=bf16-weights"]
    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT)
    cfg = str(ROOT / "configs" / "prosqa_coconut_tiny.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])):
        proc = subprocess.run([sys.executable, *launcher, str(script), cfg, *common, f"out_dir={tmp_path / name}"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = ([r["loss"] for r in read_metrics(tmp_path / n) if r["type"] == "train"] for n in ("one", "two"))
    assert len(one) == len(two) == 8 and one[0] == pytest.approx(two[0], rel=1e-2)
    assert one == pytest.approx(two, rel=3e-2)
    weights = load_file(ckpt.list_checkpoints(tmp_path / "two")[0] / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}


def test_other_precisions_train_fp32_weights_even_from_a_bf16_folder(tmp_path):
    """A base stored in bf16 (as Llama 3.2's hub weights are) loads in its own dtype; precision=fp32 (and bf16,
    autocast) still gives AdamW fp32 weights, and bf16-weights bf16 ones."""
    import transformers
    from test_lora import _save_base

    from coconut_lm.data.pipeline import vocabulary_texts
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa

    train = generate_prosqa(16, seed=0, workers=1)
    save_examples(train, tmp_path / "train.json")
    base = _save_base(tmp_path / "base", vocabulary_texts(train), 32)
    transformers.AutoModelForCausalLM.from_pretrained(base).to(torch.bfloat16).save_pretrained(base)
    assert {t.dtype for t in load_file(base / "model.safetensors").values()} == {torch.bfloat16}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.float32), ("bf16-weights", torch.bfloat16)):
        cfg = load_config(ROOT / "configs" / "prosqa_coconut_tiny.yaml", [
            f"train_path={tmp_path / 'train.json'}", f"val_path={tmp_path / 'train.json'}", f"out_dir={tmp_path / precision}",
            f"model={base}",
            f"precision={precision}", "batch_size=8", "micro_batch_size=8"])
        assert {p.dtype for p in _trainer(cfg).model.parameters()} == {dtype}, precision


def test_a_step_in_several_chunks_equals_one_adamw_step_over_all_masters(monkeypatch):
    """With chunks smaller than the weights (CHUNK_ELEMENTS lowered), three clipped steps give the masters and
    moments of torch AdamW stepping fp32 copies of all of them at once."""
    from coconut_lm.training import master

    monkeypatch.setattr(master, "CHUNK_ELEMENTS", 8)
    g = torch.Generator().manual_seed(0)
    sizes = [(10,), (3,), (2, 2), (7,), (2,)]
    weights = [torch.nn.Parameter(torch.randn(s, generator=g).to(torch.bfloat16)) for s in sizes]
    ref = [w.detach().float().clone().requires_grad_() for w in weights]
    opt = MasterAdamW(weights, lr=1e-2, weight_decay=0.1)
    assert len(opt.chunks) > 2
    plain = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        for w, r in zip(weights, ref):
            w.grad = torch.randn(w.shape, generator=g).to(torch.bfloat16)
            r.grad = w.grad.float()
        opt.clip_grad_norm(0.5)
        torch.nn.utils.clip_grad_norm_(ref, 0.5)
        opt.step()
        plain.step()
    for m, r, w in zip(opt.masters, ref, weights):
        torch.testing.assert_close(m, r.detach(), rtol=1e-6, atol=1e-7)
        assert torch.equal(w, m.to(torch.bfloat16))
        torch.testing.assert_close(opt.state[m]["exp_avg_sq"], plain.state[r]["exp_avg_sq"], rtol=1e-6, atol=1e-9)


def test_bf16_weights_keeps_the_rope_frequencies_fp32_as_loading_the_checkpoint_does(tmp_path):
    """model.to(bfloat16) rounds float buffers too: a RoPE base trained with bf16-weights must keep inv_freq in
    fp32, as HF's loading of the saved bf16 checkpoint (eval, analyze, init_from) does, or the rotations the
    trainer uses differ from those eval uses (by ~0.03 in cos at position 100, ~0.4 at 1000)."""
    from test_lora import _save_base

    from coconut_lm.data.pipeline import vocabulary_texts
    from coconut_lm.model.backbone import load_backbone
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa

    train = generate_prosqa(16, seed=0, workers=1)
    save_examples(train, tmp_path / "train.json")
    base = _save_base(tmp_path / "base", vocabulary_texts(train), 32)
    load_backbone(base).to(torch.bfloat16).save_pretrained(base)
    cfg = load_config(ROOT / "configs" / "prosqa_coconut_tiny.yaml", [
        f"train_path={tmp_path / 'train.json'}", f"val_path={tmp_path / 'train.json'}", f"out_dir={tmp_path / 'run'}",
        f"model={base}", "precision=bf16-weights", "batch_size=8", "micro_batch_size=8"])
    model = _trainer(cfg).model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    trained = dict(model.base.named_buffers())
    loaded = dict(load_backbone(base).named_buffers())
    rope = [n for n in loaded if n.endswith("inv_freq")]
    assert rope and all(loaded[n].dtype == torch.float32 for n in rope)
    for n in rope:
        assert trained[n].dtype == torch.float32 and torch.equal(trained[n], loaded[n]), n


def test_to_weights_dtype_keeps_rope_frequencies_fp32():
    """`to_weights_dtype`, through which the trainer, the bench and the memory plan cast bf16-weights models:
    weights bf16, RoPE frequencies fp32 and equal to the fp32 model's (a plain `.to(bfloat16)` rounds them,
    so the bench would time a model that training never runs)."""
    from coconut_lm.model.backbone import build_tiny_llama, to_weights_dtype

    model = build_tiny_llama(40)
    ref = {n: b.clone() for n, b in model.named_buffers() if n.endswith("inv_freq")}
    assert ref, "the tiny Llama has rotary frequencies"
    assert not torch.equal(next(iter(ref.values())).to(torch.bfloat16).float(), next(iter(ref.values())))
    to_weights_dtype(model, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    got = dict(model.named_buffers())
    for n, b in ref.items():
        assert got[n].dtype == torch.float32 and torch.equal(got[n], b), n

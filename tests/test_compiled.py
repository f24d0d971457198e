"""Compiled transformer blocks (coconut_lm.model.compiled) against the slow reference.

On CPU the blocks go through dynamo's graph capture and AOT autograd ("aot_eager": the graphs
that inductor would turn into code, without the C++ build, so the test takes seconds;
COCONUT_TEST_COMPILE_BACKEND=inductor runs the CPU case on inductor instead, minutes). With CUDA
the same checks run on inductor with CUDA graphs ("reduce-overhead"), in float32.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from test_model import TOL, assert_close, grads, make_model, make_rows, pad_batch

from coconut_lm.errors import CoconutError
from coconut_lm.model.compiled import compile_blocks, transformer_blocks
from coconut_lm.model.reference import reference_forward, reference_generate

CPU_BACKEND = os.environ.get("COCONUT_TEST_COMPILE_BACKEND", "aot_eager")
SETTINGS = [pytest.param("cpu", "default", CPU_BACKEND, id=f"cpu-{CPU_BACKEND}"),
            pytest.param("cuda", "reduce-overhead", "inductor", id="cuda-reduce_overhead",
                         marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch (dynamo's caches and counts are per process), and the
    process-wide settings that compile_blocks changes are put back for the tests after it."""
    config = torch._dynamo.config
    saved = config.suppress_errors, config.recompile_limit
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()
    config.suppress_errors, config.recompile_limit = saved


def twins(kind: str, device: str):
    """The test model eager (the reference runs on it) and a copy with compiled blocks, in train
    mode with dropout off, so that the training path is compiled and results stay deterministic."""
    eager = make_model(kind, eot_classifier=True, token_shift=1)
    if device == "cuda":
        eager = eager.float()
    for m in eager.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    eager = eager.to(device).train()
    return eager, copy.deepcopy(eager)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize(("device", "mode", "backend"), SETTINGS)
def test_compiled_blocks_match_reference(kind, device, mode, backend):
    eager, model = twins(kind, device)
    assert compile_blocks(model, mode, backend=backend) == 2
    tol = TOL[kind] if device == "cpu" else 1e-4
    counters = torch._dynamo.utils.counters
    # A block that fails to compile, or that hits the recompile limit and falls back to eager, raises here.
    with torch._dynamo.config.patch(suppress_errors=False, fail_on_recompile_limit_hit=True):
        ids, mask, labels = (t.to(device) for t in pad_batch(*make_rows([5, 2, 7], (0, 3, 8)), "align"))
        for _ in range(2 if device == "cuda" else 1):  # CUDA graphs are recorded on a warm call, replayed after
            out = model(ids, mask, labels)
            fast = grads(model, out.loss + out.eot_loss)
        ref = reference_forward(eager, ids, mask, labels)
        slow = grads(eager, ref.loss + ref.eot_loss)
        assert_close(out.loss, ref.loss, tol)
        assert_close(out.eot_loss, ref.eot_loss, tol)
        assert set(fast) == set(slow)
        for name, g in slow.items():
            assert_close(fast[name], g, tol)

        rows, n_prompt = make_rows([3, 6, 1, 4], (0, 1, 3, 6))
        prompts = [r[:n] for r, n in zip(rows, n_prompt)]
        ids, mask, _ = (t.to(device) for t in pad_batch(prompts, [len(p) for p in prompts], "left"))
        with torch.no_grad():
            gen = model.eval().generate(ids, mask, max_new_tokens=5)
        model.train()
        for i, p in enumerate(prompts):
            want = reference_generate(eager, p, 5).tokens
            assert gen.sequences[i, :len(want)].tolist() == want

        # Training again on other lengths, as the next batch would: still compiled, nothing sent back to eager.
        ids, mask, labels = (t.to(device) for t in pad_batch(*make_rows([9, 4, 3], (2, 2, 5), seed=2), "left"))
        out = model(ids, mask, labels)
        assert_close(out.loss, eager(ids, mask, labels).loss, tol)
    assert counters["frames"]["ok"] > 0, dict(counters["frames"])
    # The one thing dynamo may leave to eager is the KV-buffer write, which is `torch.compiler.disable`d on
    # purpose. Since transformers 5.25, `DynamicCache.update` forwards to it through `*args, **kwargs`, and dynamo
    # skips that small dispatch frame whole (one frame of ~70 not "ok"); any other skipped or broken frame fails.
    unexpected = [r.splitlines()[0] + " " + r for r in counters["unimplemented"] if "BufferLayer.update" not in r]
    assert not unexpected, unexpected


def test_a_failing_backend_falls_back_to_eager():
    def broken(gm, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    eager, model = twins("gpt2", "cpu")
    compile_blocks(model, backend=broken)
    ids, mask, labels = pad_batch(*make_rows([4, 6], (2, 0)), "left")
    assert_close(model(ids, mask, labels).loss, eager(ids, mask, labels).loss, 1e-12)


def test_blocks_are_found_and_bad_modes_refused():
    assert len(transformer_blocks(make_model("gpt2").body)) == 2
    assert len(transformer_blocks(make_model("llama").body)) == 2
    with pytest.raises(CoconutError, match="cannot find the transformer blocks of Linear"):
        transformer_blocks(torch.nn.Linear(2, 2))
    with pytest.raises(CoconutError, match="compile mode 'fastest' is not one of default, reduce-overhead"):
        compile_blocks(make_model("gpt2"), "fastest")


def test_trainer_compiles_the_blocks_after_wrapping(tmp_path, monkeypatch):
    """`compile=true` reaches compile_blocks with `compile_mode`, after the model is wrapped."""
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa
    from coconut_lm.training import train
    from coconut_lm.training.config import load_config
    from coconut_lm.training.dist import init_distributed

    calls = []
    wrap_model = train.dist.wrap_model

    def wrap(model, env, how):
        calls.append("wrapped")
        return wrap_model(model, env, how)

    monkeypatch.setattr(train, "compile_blocks", lambda model, mode, backend: calls.append(mode))
    monkeypatch.setattr(train.dist, "wrap_model", wrap)
    save_examples(generate_prosqa(8, seed=0, workers=1), tmp_path / "train.json")
    cfg = load_config(None, [f"train_path={tmp_path / 'train.json'}", "model=micro", "compile=true",
                             "compile_mode=reduce-overhead", f"out_dir={tmp_path / 'run'}"])
    train.Trainer(cfg, init_distributed("cpu"), progress=False)
    assert calls == ["wrapped", "reduce-overhead"]
    with pytest.raises(CoconutError, match="'compile_mode': 'fast' is not one of"):
        load_config(None, ["compile_mode=fast"])

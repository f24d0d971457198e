"""LoRA (coconut_lm.model.lora): equal to the slow reference and to full fine-tuning's gradients, frozen where it
must be, small checkpoints that reload, exact resume, a merged export, two gloo ranks (DDP, FSDP2), clear errors.

The model-level tests run every decoder family of test_families (and GPT-2) with adapters on every block
linear layer. The training tests use a tiny random Llama saved locally with a word-level tokenizer that
lacks a pad token and Coconut's tokens, as a new user's `model=PATH` would: the run adds them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_families import FAMILIES, FLOAT32, TOL, make_family, step_against_reference
from test_model import TK, VOCAB, assert_close, grads, make_model, make_rows, pad_batch

from coconut_lm.errors import CoconutError
from coconut_lm.model.coconut import CoconutLM
from coconut_lm.model.lora import (
    ADAPTER_FILE,
    DEFAULT_TARGETS,
    LoraInfo,
    RowEmbedding,
    RowHead,
    apply_lora,
    default_targets,
    lora_info,
    lora_keys,
    merge_lora,
)
from coconut_lm.model.reference import reference_generate
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training import manifest
from coconut_lm.training.config import load_config
from coconut_lm.training.runlog import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ALL = ["gpt2", *FAMILIES]
ROWS = (TK.bot, TK.eot, TK.latent, TK.pause)
R, ALPHA = 4, 8.0


def _model(family: str, **kw) -> CoconutLM:
    return make_model("gpt2", **kw) if family == "gpt2" else make_family(family, **kw)


def _adapt(model: CoconutLM, dropout: float = 0.0) -> CoconutLM:
    apply_lora(model, LoraInfo(r=R, alpha=ALPHA, dropout=dropout, targets=default_targets(model.base), base="test",
                               rows=ROWS, vocab_rows=VOCAB))
    return model


def _perturb(model: CoconutLM, seed: int = 0) -> None:
    """Move every adapter (B starts at zero) and token row, so that each one changes the output."""
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k in lora_keys(model):
            params[k].add_(torch.randn(params[k].shape, generator=g, dtype=torch.float64).to(params[k].dtype) * 0.2)


def _trainable(model: CoconutLM) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------------------------------ model level


@pytest.mark.parametrize("family", ALL)
def test_lora_step_matches_reference(family):
    """One Coconut step with adapters: loss and every trainable gradient equal the no-cache reference."""
    model = _adapt(_model(family, eot_classifier=True, token_shift=1))
    _perturb(model)
    tol = FLOAT32.get(family, TOL if family != "gpt2" else 1e-9)
    out, ref, fast, slow = step_against_reference(model)
    assert_close(out.loss, ref.loss, tol)
    assert set(fast) == set(slow) == _trainable(model)
    for name, g in slow.items():
        assert_close(fast[name], g, tol)
    assert any(".lora_A." in n for n in fast) and any(".lora_B." in n for n in fast)
    assert sum(n.endswith("rows.values") for n in fast) == (1 if model.base.config.tie_word_embeddings else 2)


@pytest.mark.parametrize("family", ALL)
def test_lora_gradients_are_full_fine_tunings_by_the_chain_rule(family):
    """At B = 0 an adapted model computes what the plain one does, and its gradients follow from the plain model's:
    a token row gets its matrix row's gradient (both uses of a tied matrix), B gets (alpha/r) dL/dW A^T."""
    plain = _model(family, eot_classifier=True, token_shift=1)
    lora = _adapt(_model(family, eot_classifier=True, token_shift=1))
    tol = FLOAT32.get(family, TOL if family != "gpt2" else 1e-9)
    ids, mask, labels = pad_batch(*make_rows([4, 6, 3], (2, 1, 4)), "right")
    a, b = plain(ids, mask, labels), lora(ids, mask, labels)
    assert_close(a.loss, b.loss, tol)
    full, low = grads(plain, a.loss + a.eot_loss), grads(lora, b.loss + b.eot_loss)
    base = plain.base
    emb, head = base.get_input_embeddings().weight, base.get_output_embeddings().weight
    names = {id(p): n for n, p in plain.named_parameters()}
    ids_t = torch.tensor(ROWS)
    wrappers = lora.base.get_input_embeddings(), lora.base.get_output_embeddings()
    live = dict(lora.named_parameters())
    for wrapper, matrix in zip(wrappers, (emb, head)):
        row_name = next(n for n, p in live.items() if p is wrapper.rows.values)
        assert_close(low[row_name], full[names[id(matrix)]][ids_t], tol)
    s = ALPHA / R
    for n in low:
        if ".lora_B." not in n:
            continue
        a_weight = live[n.replace(".lora_B.", ".lora_A.")]
        layer = n.split(".lora_B.")[0]
        g = full[layer + ".weight"]  # dL/dW of the plain layer
        g = g.T if family == "gpt2" else g  # GPT-2's Conv1D stores W as (in, out)
        assert_close(low[n], s * g @ a_weight.T, tol)
    for n in ("eot_head.weight", "token_shift.weight"):
        assert_close(low[n], full[n], tol)


@pytest.mark.parametrize("family", ALL)
def test_merge_keeps_the_model_and_writes_a_plain_hf_folder(family, tmp_path):
    from transformers import AutoModelForCausalLM

    model = _adapt(_model(family))
    _perturb(model, seed=1)
    rows, n_prompt = make_rows([3, 6, 1, 4], (0, 1, 3, 6))
    prompts = [r[:n] for r, n in zip(rows, n_prompt)]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    before = model.generate(ids, mask, max_new_tokens=6, return_thoughts=True)
    for i, p in enumerate(prompts):  # generation with adapters equals the reference too
        ref = reference_generate(model, p, 6).tokens
        assert before.sequences[i, :len(ref)].tolist() == ref, (family, i)
    tid, tmask, labels = pad_batch(*make_rows([5, 2], (1, 2)), "align")
    loss = model(tid, tmask, labels).loss
    merge_lora(model)
    assert lora_info(model) is None and all(p.requires_grad for p in model.parameters())
    assert not any("lora_" in n or "rows" in n for n, _ in model.named_parameters())
    assert_close(model(tid, tmask, labels).loss, loss, FLOAT32.get(family, 1e-9))
    assert torch.equal(model.generate(ids, mask, max_new_tokens=6).sequences, before.sequences)
    model.base.save_pretrained(tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=next(model.parameters()).dtype)
    again = CoconutLM(hf, TK).eval().generate(ids, mask, max_new_tokens=6)
    assert torch.equal(again.sequences, before.sequences)


@pytest.mark.parametrize("family", ALL)
def test_lora_folder_reloads_onto_its_base(family, tmp_path):
    """save_pretrained writes only the adapters and rows; from_pretrained rebuilds the model on the saved base."""
    model = _model(family, eot_classifier=True)
    model.base.save_pretrained(tmp_path / "base")
    apply_lora(model, LoraInfo(r=R, alpha=ALPHA, dropout=0.0, targets=default_targets(model.base),
                               base=str(tmp_path / "base"), rows=ROWS, vocab_rows=VOCAB))
    _perturb(model, seed=2)
    model.save_pretrained(tmp_path / "lora")
    assert not (tmp_path / "lora" / "config.json").exists()
    loaded = CoconutLM.from_pretrained(tmp_path / "lora").eval()
    live = dict(model.named_parameters())
    assert {n for n, _ in loaded.named_parameters()} == set(live)
    for n, p in loaded.named_parameters():
        assert torch.equal(p, live[n]), n
    rows, n_prompt = make_rows([3, 6, 1, 4], (0, 1, 3, 6))
    prompts = [r[:n] for r, n in zip(rows, n_prompt)]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    assert torch.equal(loaded.generate(ids, mask, max_new_tokens=6).sequences,
                       model.generate(ids, mask, max_new_tokens=6).sequences)


@pytest.mark.parametrize("family", ALL)
def test_default_targets_are_every_linear_layer_of_the_blocks(family):
    from coconut_lm.model.lora import _body, _linear_names, target_modules

    model = _model(family)
    body, prefix = _body(model.base)
    every = _linear_names(body, prefix)
    targets = default_targets(model.base)
    assert model.base.config.model_type in DEFAULT_TARGETS
    assert set(target_modules(model.base, targets)) == set(every)
    assert not any("lm_head" in n for n in every)
    expected = {"gpt2": {"c_attn", "c_proj", "c_fc"}, "phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}}
    assert set(targets) == expected.get(family, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"})


@pytest.mark.parametrize("family", ["llama3", "gpt2"])
def test_untied_and_tied_heads_get_their_rows(family):
    """Rows start as the matrices' rows, whose own copies become zeros; a tied head shares the embedding's rows."""
    plain = _model(family)
    emb0, head0 = (m.weight.detach().clone() for m in (plain.base.get_input_embeddings(),
                                                       plain.base.get_output_embeddings()))
    model = _adapt(plain)
    tied = family == "gpt2"
    emb, head = model.base.get_input_embeddings(), model.base.get_output_embeddings()
    assert isinstance(emb, RowEmbedding) and isinstance(head, RowHead)
    assert (emb.rows is head.rows) is tied and (emb.weight is head.weight) is tied
    others = [i for i in range(VOCAB) if i not in ROWS]
    for wrapper, before in ((emb, emb0), (head, head0)):
        assert torch.equal(wrapper.rows.values, before[list(ROWS)])
        assert not wrapper.weight[list(ROWS)].any() and torch.equal(wrapper.weight[others], before[others])


# --------------------------------------------------------------------------------- training level


def _base_tokenizer(texts):
    """A word-level tokenizer with an unknown and an eos token only (no pad, none of Coconut's tokens)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from coconut_lm.data.tokenizer import build_word_tokenizer

    full = build_word_tokenizer(texts)
    vocab = {"<unk>": 0, "</s>": 1}
    for piece in sorted(full.get_vocab(), key=full.get_vocab().get):
        if not piece.startswith("<"):
            vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = full.backend_tokenizer.pre_tokenizer
    backend.decoder = full.backend_tokenizer.decoder
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")


def _save_base(folder: Path, texts, hidden: int, seed: int = 0, tied: bool = False) -> Path:
    import transformers

    tok = _base_tokenizer(texts)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=512, initializer_range=0.2, bos_token_id=1,
                                      eos_token_id=1, pad_token_id=None, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Training and validation ProsQA files and saved Llama bases (32 wide, untied or tied head; 256 wide)."""
    from coconut_lm.data.pipeline import vocabulary_texts
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa

    root = tmp_path_factory.mktemp("lora")
    train, val = generate_prosqa(24, seed=0, workers=1), generate_prosqa(8, seed=1, workers=1)
    save_examples(train, root / "train.json")
    save_examples(val, root / "val.json")
    texts = vocabulary_texts(train + val)
    return {"root": root, "texts": texts, "base": _save_base(root / "base", texts, 32),
            "tied": _save_base(root / "tied", texts, 32, tied=True), "wide": _save_base(root / "wide", texts, 256)}


def _cfg(world, out: Path, *extra: str, base: str = "base"):
    r = world["root"]
    return load_config(ROOT / "configs" / "prosqa_coconut_tiny.yaml", [
        f"train_path={r / 'train.json'}", f"val_path={r / 'val.json'}", f"out_dir={out}", f"model={world[base]}",
        "lora_r=4", "batch_size=8", "micro_batch_size=4", "eval_batch_size=8", "max_new_tokens=12", "num_epochs=2",
        "epochs_per_stage=1", "max_latent_stage=1", "log_every=1", "lr=1e-2", "weight_decay=0.1", *extra])


def _prompts(model, tok, world, n_thoughts: int = 1) -> list[list[int]]:
    from coconut_lm.data.pipeline import tokenize_examples
    from coconut_lm.recipe.methods import LayoutConfig, get_method
    from coconut_lm.tasks.examples import load_examples

    examples = load_examples(world["root"] / "val.json")
    return [get_method("coconut").eval_prompt(ex, n_thoughts, LayoutConfig(), model.tokens)
            for ex in tokenize_examples(examples, tok)]


def _generate(model, tok, prompts) -> list[list[int]]:
    from coconut_lm.eval.evaluate import generate_prompts

    return [g.ids for g in generate_prompts(model.eval(), tok, prompts, 12)]


def test_lora_run_trains_only_adapters_and_token_rows_and_reloads(world, tmp_path):
    """AdamW with weight decay for 6 steps: every frozen weight (the embedding matrix included) stays bit-identical,
    the adapters and rows move, and the checkpoint reloads onto the base to the same generations."""
    from coconut_lm.training import dist
    from coconut_lm.training.train import Trainer

    trainer = Trainer(_cfg(world, tmp_path / "run"), dist.init_distributed("cpu"), progress=False)
    model = trainer.model
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(start) == set(lora_keys(model)) and any("lora_B" in n for n in start)
    info = lora_info(model)
    assert info.base == str(world["base"].resolve()) and info.r == 4 and info.alpha == 8.0
    tok = trainer.tokenizer
    added = {tok.convert_tokens_to_ids(t) for t in ("<pad>", "<bot>", "<eot>", "<latent>", "<pause>")}
    assert set(info.rows) == added and info.vocab_rows == len(tok)
    trainer.run()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
        else:
            assert not torch.equal(p, start[n]), n  # every adapter and row moved
    assert all(not trainer.optimizer.state.get(p) for p in model.parameters() if not p.requires_grad)

    latest = ckpt.list_checkpoints(tmp_path / "run")[0]
    assert (latest / ADAPTER_FILE).is_file() and not (latest / "model.safetensors").exists()
    loaded, ltok, meta = ckpt.load_model(latest)
    assert lora_info(loaded) == info
    prompts = _prompts(model, tok, world)
    assert _generate(loaded, ltok, prompts) == _generate(model, tok, prompts)
    live = dict(model.named_parameters())
    for n, p in loaded.named_parameters():  # the base's weights plus the saved adapters: the trained model
        assert torch.equal(p, live[n]), n


def test_lora_checkpoint_is_under_5_percent_of_the_model_and_commands_load_it(world, tmp_path, capsys):
    from coconut_lm.cli import main
    from coconut_lm.training.train import train

    run = train(_cfg(world, tmp_path / "run", "num_epochs=1", "max_steps_per_epoch=1", base="wide"),
                progress=False, device="cpu").run_dir
    assert main(["export", str(run), "--merge", "--out", str(tmp_path / "merged")]) == 0

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())

    assert size(run / "best") < 0.05 * size(tmp_path / "merged"), (size(run / "best"), size(tmp_path / "merged"))
    val = str(world["root"] / "val.json")
    assert main(["eval", str(run), "--data", val, "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    question = json.loads(Path(val).read_text())[0]["question"]
    assert main(["generate", str(run), "--question", question, "--latents", "2", "--show-thoughts"]) == 0
    assert "thought 1:" in capsys.readouterr().out
    assert main(["analyze", str(run), "--data", val, "--out", str(tmp_path / "analysis"), "--max-examples", "4"]) == 0
    assert (tmp_path / "analysis" / "analysis.md").is_file()


def test_export_merge_loads_as_a_plain_model_with_the_same_generations(world, tmp_path):
    from transformers import AutoModelForCausalLM

    from coconut_lm.cli import main
    from coconut_lm.training.build import build_model
    from coconut_lm.training.train import train

    run = train(_cfg(world, tmp_path / "run", "num_epochs=1"), progress=False, device="cpu").run_dir
    lora, tok, _ = ckpt.load_model(run)
    out = tmp_path / "merged"
    assert main(["export", str(run / "best"), "--merge", "--out", str(out)]) == 0
    manifest.verify_checkpoint(out)
    assert not (out / ADAPTER_FILE).exists()
    AutoModelForCausalLM.from_pretrained(out)  # an ordinary HF folder
    plain, ptok = build_model(_cfg(world, tmp_path / "x", "lora_r=0", f"model={out}"), [])
    assert lora_info(plain) is None and len(ptok) == len(tok)
    prompts = _prompts(lora, tok, world)
    want = _generate(lora, tok, prompts)
    assert _generate(plain, ptok, prompts) == want
    full, ftok, _ = ckpt.load_model(out)  # and still a coconut-lm checkpoint
    assert _generate(full, ftok, prompts) == want
    with pytest.raises(CoconutError, match="is not empty"):
        from coconut_lm.training.export import export_merged

        export_merged(run, out)


def test_lora_resume_from_a_mid_epoch_checkpoint_is_exact(world, tmp_path):
    """lora_dropout draws random numbers: the resumed run must restore them, its adapters and its optimizer.

    One thread: the rows' embedding backward sums in a thread-dependent order, so only a single-threaded
    pair of runs is bit for bit comparable (the losses agree either way)."""
    from coconut_lm.training.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _resume_pair(world, tmp_path, train)
    finally:
        torch.set_num_threads(threads)


def _resume_pair(world, tmp_path, train):

    straight = tmp_path / "straight"
    cfg = _cfg(world, straight, "save_every_steps=1", "keep_last=10", "lora_dropout=0.1")
    train(cfg, progress=False, device="cpu")
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "best")
    for p in ckpt.list_checkpoints(resumed):
        if int(p.name.split("-")[1]) > 4:  # keep steps 1..4: step 4 is in the middle of epoch 2
            shutil.rmtree(p)
    cfg.out_dir = str(resumed)
    result = train(cfg, resume=True, progress=False, device="cpu")
    assert result.global_step == 6

    def losses(run):
        return [(r["step"], r["loss"]) for r in read_metrics(run) if r["type"] == "train"]

    assert losses(resumed) == losses(straight) and len(losses(straight)) == 6
    a = load_file(ckpt.list_checkpoints(straight)[0] / ADAPTER_FILE)
    b = load_file(ckpt.list_checkpoints(resumed)[0] / ADAPTER_FILE)
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_init_from_a_lora_checkpoint_trains_it_on_or_merges_it(world, tmp_path):
    from coconut_lm.training.train import train

    first = train(_cfg(world, tmp_path / "first", "num_epochs=1", "max_steps_per_epoch=1", "method=cot"),
                  progress=False, device="cpu").run_dir
    on = train(_cfg(world, tmp_path / "on", "num_epochs=1", "max_steps_per_epoch=1", f"init_from={first}"),
               progress=False, device="cpu").run_dir
    info = lora_info(ckpt.load_model(on)[0])
    assert info is not None and info.base == str(world["base"].resolve())
    full = train(_cfg(world, tmp_path / "full", "num_epochs=1", "max_steps_per_epoch=1", f"init_from={first}",
                      "lora_r=0"), progress=False, device="cpu").run_dir
    assert (full / "best" / "model.safetensors").is_file() and not (full / "best" / ADAPTER_FILE).exists()
    with pytest.raises(CoconutError, match="holds LoRA adapters with r=4, alpha=8"):
        train(_cfg(world, tmp_path / "bad", "num_epochs=1", f"init_from={first}", "lora_r=8"),
              progress=False, device="cpu")


DDP_SCRIPT = """
import sys
from coconut_lm.training.config import load_config
from coconut_lm.training.train import train
train(load_config(sys.argv[1], sys.argv[2:]), progress=False, device="cpu")
"""


@pytest.mark.slow
@pytest.mark.parametrize("head", ["untied", "tied"])
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_lora_two_gloo_ranks_equal_one_process(world, tmp_path, strategy, head):
    """A tied head shares its token rows with the embedding: both strategies must sum their gradient over ranks."""
    from test_train import _run

    r = world["root"]
    base = world["tied" if head == "tied" else "base"]
    common = [f"train_path={r / 'train.json'}", f"val_path={r / 'val.json'}", f"model={base}", "lora_r=4",
              "batch_size=8", "micro_batch_size=4", "num_epochs=2", "epochs_per_stage=1", "max_latent_stage=1",
              "eval_every=100", "eval_batch_size=8", "max_new_tokens=8", "log_every=1", "lr=1e-2",
              f"distributed={strategy}"]
    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT)
    cfg = str(ROOT / "configs" / "prosqa_coconut_tiny.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = _run([sys.executable, str(script), cfg, *common, f"out_dir={tmp_path / 'one'}"], env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
                cfg, *common, f"out_dir={tmp_path / 'two'}"], env)
    assert two.returncode == 0, two.stderr[-3000:]
    loss_one = [x["loss"] for x in read_metrics(tmp_path / "one") if x["type"] == "train"]
    loss_two = [x["loss"] for x in read_metrics(tmp_path / "two") if x["type"] == "train"]
    assert len(loss_one) == len(loss_two) == 6
    assert loss_one == pytest.approx(loss_two, rel=1e-5, abs=1e-6)
    a = load_file(ckpt.list_checkpoints(tmp_path / "one")[0] / ADAPTER_FILE)
    b = load_file(ckpt.list_checkpoints(tmp_path / "two")[0] / ADAPTER_FILE)
    assert a.keys() == b.keys() and sum("rows" in k for k in a) == (1 if head == "tied" else 2)
    atol = {"ddp": 1e-5, "fsdp": 1e-4}[strategy]  # as tests/test_train.py: FSDP's reduce-scatter sums in another order
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=atol)


# ------------------------------------------------------------------------------------- bad input


def test_lora_settings_are_checked(world, tmp_path, monkeypatch):
    from coconut_lm.training.build import build_model

    for extra, message in ((["lora_r=0", "lora_alpha=16"], "config 'lora_alpha': set, but lora_r=0"),
                           (["lora_r=0", "lora_targets=q_proj"], "config 'lora_targets': set, but lora_r=0"),
                           (["lora_dropout=1"], "config 'lora_dropout': must be in"),
                           (["lora_alpha=0"], "config 'lora_alpha': must be > 0"),
                           (["lora_targets= , "], "config 'lora_targets': empty"),
                           (["lora_r=-1"], "config 'lora_r': must be >= 0")):
        with pytest.raises(CoconutError, match=message):
            _cfg(world, tmp_path / "x", *extra)
    with pytest.raises(CoconutError, match="no linear layer 'nope' in the blocks of LlamaForCausalLM; its linear "
                                           "layers are q_proj, k_proj"):
        build_model(_cfg(world, tmp_path / "x", "lora_targets=q_proj,nope"), [])
    with pytest.raises(CoconutError, match="model=micro is a preset trained from scratch"):
        build_model(_cfg(world, tmp_path / "x", "model=micro"), world["texts"])
    picked = build_model(_cfg(world, tmp_path / "x", "lora_targets=self_attn.q_proj, v_proj", "lora_r=2"), [])[0]
    names = {n for n, _ in picked.named_parameters() if ".lora_A." in n}
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"} and len(names) == 4
    monkeypatch.setitem(sys.modules, "peft", None)  # as if it were not installed
    with pytest.raises(CoconutError, match=r"needs the peft package: pip install 'coconut-lm\[peft\]'"):
        _cfg(world, tmp_path / "x")


def test_a_lora_checkpoint_refuses_a_changed_or_missing_base(world, tmp_path):
    from coconut_lm.cli import main
    from coconut_lm.training.train import train

    base = shutil.copytree(world["base"], tmp_path / "base")
    cfg = _cfg(world, tmp_path / "run", "num_epochs=1", "max_steps_per_epoch=1", f"model={base}")
    best = train(cfg, progress=False, device="cpu").run_dir / "best"
    (best_copy := tmp_path / "copy").mkdir()
    for f in best.iterdir():
        if f.name != manifest.MANIFEST and f.name != ADAPTER_FILE:
            shutil.copy(f, best_copy / f.name)
    with pytest.raises(CoconutError, match="adapter.safetensors: missing, but coconut.json says"):
        CoconutLM.from_pretrained(best_copy)
    weights = load_file(base / "model.safetensors")
    name = next(k for k in weights if "q_proj" in k)
    weights[name] = weights[name] + 1e-3
    from safetensors.torch import save_file

    save_file(weights, str(base / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CoconutError, match="is not the model the adapters were trained on"):
        ckpt.load_model(best)
    shutil.rmtree(base)
    assert main(["eval", str(best), "--data", str(world["root"] / "val.json"), "--out", str(tmp_path / "e")]) == 2
    with pytest.raises(CoconutError, match=f"LoRA adapters for the base model '{base}', which cannot be loaded"):
        ckpt.load_model(best)

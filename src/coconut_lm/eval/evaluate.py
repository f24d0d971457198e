"""Generation evaluation: accuracy, tokens per answer, and a record per example.

    result = evaluate(model, tokenizer, examples, method, layout_cfg, task="prosqa", n_thoughts=6)
    result.summary.accuracy, result.records[0].text
    write_eval(result, "runs/x/eval")      # predictions.jsonl + summary.json

Prompts are sorted by length and generated in batches with a KV cache (`CoconutLM.generate`).
"Tokens" follows the paper: language tokens generated (EOS included) plus continuous thoughts.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from coconut_lm.data.batching import collate, left_pad
from coconut_lm.data.pipeline import UnknownTokens, is_symbol_tokenizer, tokenize_checked, tokenize_examples
from coconut_lm.errors import CoconutError
from coconut_lm.eval.outputs import check_out_dir, clear_outputs, live_bars
from coconut_lm.recipe.methods import LayoutConfig, Method, TokenizedExample
from coconut_lm.tasks.answers import answers_match, chain_lines, data_task, extract_answer, same_chain
from coconut_lm.tasks.examples import Example, atomic_write_text
from coconut_lm.tasks.registry import TASKS
from coconut_lm.tasks.symbolic import is_symbolic

#: What `eval` writes into its --out (and `--overwrite` removes first): one setting's files, or forced k's.
EVAL_OUTPUTS = re.compile(r"predictions\.jsonl|summary\.json|forced_k\.json|k\d+|classifier(@[0-9.e-]+)?|tradeoff\.png")


@dataclass
class EvalRecord:
    """One example's outcome."""

    index: int
    question_id: str
    text: str
    predicted: str
    gold: str
    correct: bool
    tokens: int  # paper's count: language tokens plus continuous thoughts
    language_tokens: int
    thoughts: int
    cot_match: bool | None


@dataclass
class EvalSummary:
    """Aggregate numbers of one evaluation run."""

    n: int
    accuracy: float
    mean_tokens: float
    mean_language_tokens: float
    mean_thoughts: float
    examples_per_s: float
    cot_match: float | None
    n_thoughts: int | None
    use_classifier: bool
    eot_threshold: float | None = None  # with the classifier: sigmoid above which latent mode ends


@dataclass
class EvalResult:
    records: list[EvalRecord]
    summary: EvalSummary


@dataclass
class Generated:
    """One prompt's generation: the decoded text, its token and thought counts, and the thoughts if asked."""

    ids: list[int]
    text: str
    language_tokens: int
    thoughts: int
    thought_states: torch.Tensor | None = None


@torch.no_grad()
def generate_prompts(model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int, *,
                     use_classifier: bool = False, max_thoughts: int = 16,
                     return_thoughts: bool = False, eot_threshold: float = 0.5) -> list[Generated]:
    """Left-pad `prompts` into one batch, generate on the model's device, decode each row.

    The one generation path of `eval`, `generate` and `analyze`.
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(list(prompts), model.tokens.pad)
    out = model.generate(ids.to(device), mask.to(device), max_new_tokens, use_eot_classifier=use_classifier,
                         max_thoughts=max_thoughts, return_thoughts=return_thoughts, eot_threshold=eot_threshold)
    seqs, ntok, nth = out.sequences.cpu(), out.num_tokens.cpu(), out.num_thoughts.cpu()
    rows = []
    for r in range(len(prompts)):
        seq = seqs[r, :int(ntok[r])].tolist()
        rows.append(Generated(seq, tokenizer.decode(seq, skip_special_tokens=True), int(ntok[r]), int(nth[r]),
                              out.thoughts[r] if out.thoughts is not None else None))
    return rows


@torch.no_grad()
def evaluate(
    model,
    tokenizer,
    examples: Sequence[Example],
    method: Method,
    layout_cfg: LayoutConfig,
    task: str,
    n_thoughts: int,
    batch_size: int = 64,
    max_new_tokens: int = 64,
    use_classifier: bool = False,
    max_thoughts: int = 16,
    progress: bool = True,
    desc: str = "eval",
    data: Sequence[TokenizedExample] | None = None,
    eot_threshold: float = 0.5,
) -> EvalResult:
    """Generate for every example and score it.

    Args:
        model: a `CoconutLM` (in eval mode on its device).
        tokenizer: the run's tokenizer.
        examples: the evaluation set.
        method: decides the prompt layout.
        layout_cfg: c, max stage and pause count.
        task: prosqa | prontoqa | gsm8k (answer parsing).
        n_thoughts: thought (or pause) slots in each prompt; ignored by methods without slots.
        use_classifier: let the model's <eot> classifier end latent mode (prompt ends at <bot>), once
            sigmoid(logit) > `eot_threshold` or at `max_thoughts`.
        data: `examples` already tokenised (e.g. once for several forced-k settings); else done here.
    """
    tokens = model.tokens
    if data is None:
        data = tokenize_examples(examples, tokenizer)
    if use_classifier:
        # The model thinks from <bot>, or, without latent markers, from the question's last token.
        prompts = [list(ex.question) + ([tokens.bot] if layout_cfg.latent_markers else []) for ex in data]
    else:
        prompts = [method.eval_prompt(ex, n_thoughts, layout_cfg, tokens) for ex in data]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    was_training = model.training
    model.eval()
    results: dict[int, Generated] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(order), desc=desc, disable=not live_bars(progress), leave=False, unit="ex")
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        gen = generate_prompts(model, tokenizer, [prompts[i] for i in idx], max_new_tokens,
                               use_classifier=use_classifier, max_thoughts=max_thoughts,
                               eot_threshold=eot_threshold)
        results.update(zip(idx, gen))
        bar.update(len(idx))
    bar.close()
    elapsed = time.perf_counter() - start
    model.train(was_training)

    records = []
    for i, ex in enumerate(examples):
        g = results[i]
        text, ntok, nth = g.text, g.language_tokens, g.thoughts
        predicted = extract_answer(task, text)
        # With the classifier each row chose its own thought count; the chain continues after those.
        expected = method.expected_steps(ex.steps, nth if use_classifier else n_thoughts, layout_cfg)
        records.append(EvalRecord(
            index=i, question_id=str(ex.extra.get("id", i)), text=text, predicted=predicted, gold=ex.answer,
            correct=answers_match(task, predicted, ex.answer), tokens=ntok + (nth if method.continuous else 0),
            language_tokens=ntok, thoughts=nth, cot_match=None if expected is None else same_chain(chain_lines(text), expected),
        ))
    summary = summarize(records, elapsed, None if use_classifier else n_thoughts, use_classifier)
    summary.eot_threshold = eot_threshold if use_classifier else None
    return EvalResult(records, summary)


def summarize(records: Sequence[EvalRecord], seconds: float, n_thoughts: int | None, use_classifier: bool) -> EvalSummary:
    """Aggregate records into an EvalSummary."""
    n = len(records)
    cot = [r.cot_match for r in records if r.cot_match is not None]
    return EvalSummary(
        n=n,
        accuracy=sum(r.correct for r in records) / max(n, 1),
        mean_tokens=sum(r.tokens for r in records) / max(n, 1),
        mean_language_tokens=sum(r.language_tokens for r in records) / max(n, 1),
        mean_thoughts=sum(r.thoughts for r in records) / max(n, 1),
        examples_per_s=n / seconds if seconds > 0 else float("inf"),
        cot_match=sum(cot) / len(cot) if cot else None,
        n_thoughts=n_thoughts,
        use_classifier=use_classifier,
    )


def write_eval(result: EvalResult, out_dir: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write `predictions.jsonl` and `summary.json` (plus `extra` keys) into out_dir, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(asdict(r)) + "\n" for r in result.records))
    atomic_write_text(out / "summary.json", json.dumps({**asdict(result.summary), **(extra or {})}, indent=2) + "\n")
    return out


def accuracy_by_steps(examples: Sequence[Example], records: Sequence[EvalRecord]) -> dict[str, dict[str, float]]:
    """Accuracy and mean thoughts per gold chain length (for ProsQA, the hop count), e.g.
    {"3": {"n": 124, "accuracy": 0.97, "mean_thoughts": 3.4}}."""
    groups: dict[int, list[EvalRecord]] = {}
    for ex, rec in zip(examples, records):
        groups.setdefault(len(ex.steps), []).append(rec)
    return {str(k): {"n": len(v), "accuracy": sum(r.correct for r in v) / len(v),
                     "mean_thoughts": sum(r.thoughts for r in v) / len(v)} for k, v in sorted(groups.items())}


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when either side is constant or empty."""
    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for m in range(i, j + 1):
                out[order[m]] = (i + j) / 2
            i = j + 1
        return out

    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def data_form(examples: Sequence[Example]) -> str | None:
    """"symbolic" when every item is in a symbolic form, "words" when none is, None for a mix or no items."""
    marks = {is_symbolic(ex) for ex in examples}
    return None if len(marks) != 1 else "symbolic" if marks == {True} else "words"


def checkpoint_form(meta, tokenizer) -> str | None:
    """The form a checkpoint was trained on: its `data_format` (meta may be None), else "symbolic" for a
    symbol tokenizer, else unknown (None)."""
    if meta is not None and meta.data_format:
        return meta.data_format
    return "symbolic" if is_symbol_tokenizer(tokenizer) else None


@dataclass
class CheckedData:
    """A data file's examples tokenised for one checkpoint through the checked path, and what they looked like."""

    data: list[TokenizedExample]
    unknown: UnknownTokens | None  # None when every token is known
    looks_like: str | None  # the task the data looks like (`data_task`), or None


def check_eval_data(examples: Sequence[Example], tokenizer, task: str, data_path: str | os.PathLike,
                    checkpoint: str | os.PathLike, any_task: bool = False, command: str = "eval",
                    meta=None) -> CheckedData:
    """Check data against a checkpoint as every scoring command (`eval`, `analyze`) does, then tokenise it.

    Data that looks like another task's than the checkpoint's, or in the other form (word form for a
    model that reads symbols, or the reverse; `meta.data_format`, else the tokenizer, says which the
    model reads), is refused unless `any_task`; control-token text is always refused; unknown tokens
    are counted and reported in one line.
    """
    looks_like = data_task(examples)
    if looks_like is not None and looks_like != task and not any_task:
        raise CoconutError(f"{command}: {data_path} looks like {looks_like} data but checkpoint {checkpoint} was "
                           f"trained on {task}; pass --any-task to score it anyway")
    form, trained = data_form(examples), checkpoint_form(meta, tokenizer)
    if form is not None and trained is not None and form != trained and not any_task:
        unit = {"prosqa": "node", "prontoqa": "concept"}.get(looks_like or task, "symbol")
        label = {"symbolic": f"the symbolic form (one token per {unit})", "words": "the word form"}
        name = TASKS[looks_like or task].label if (looks_like or task) in TASKS else looks_like or task
        hint = f" (convert it: coconut-lm data symbolic {data_path} --out FILE)" if trained == "symbolic" else ""
        raise CoconutError(f"{command}: {data_path} is {name} in {label[form]} but checkpoint {checkpoint} reads "
                           f"{label[trained]}{hint}; pass --any-task to score it anyway")
    data, unknown = tokenize_checked(examples, tokenizer, str(data_path))
    return CheckedData(data, unknown, looks_like)



def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    latents: Sequence[int] | None = None,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    use_classifier: bool | None = None,
    max_examples: int | None = None,
    device: str = "auto",
    progress: bool = True,
    any_task: bool = False,
    compile: str | None = None,
    eot_thresholds: Sequence[float] | None = None,
    overwrite: bool = False,
) -> dict[str, EvalSummary]:
    """Evaluate a checkpoint (or a run folder's best/) on a data file, once per thought count in `latents` (forced k).

    With the classifier, once per threshold in `eot_thresholds` (default 0.5: "classifier", else
    "classifier@<t>"), and once per count in `latents` given beside it, so the model's own stop and a
    fixed count of the same checkpoint sit in one table; each classifier summary also records the
    Spearman correlation between the thoughts each example used and its gold chain length.
    A data file that looks like another task's than the checkpoint's, or in the other form, is refused
    unless `any_task` (`check_eval_data`). A non-empty `out_dir` is refused unless `overwrite`; then the
    earlier eval's files in it are removed just before the new ones are written, so the two never mix.
    `compile` names a `torch.compile` mode for every transformer block (coconut_lm.model.compiled).

    Writes `<out>/predictions.jsonl` and `<out>/summary.json` for one setting, or `<out>/k<k>/...`
    plus `<out>/forced_k.json` for several. Returns the summaries keyed "k<k>" (or "classifier").
    """
    from coconut_lm.recipe.methods import get_method
    from coconut_lm.tasks.examples import load_examples
    from coconut_lm.training.checkpoint import load_model, resolve_checkpoint
    from coconut_lm.training.dist import resolve_device

    out = check_out_dir(out_dir, overwrite, "eval")
    dev = resolve_device(device)
    checkpoint = resolve_checkpoint(checkpoint)
    model, tokenizer, meta = load_model(checkpoint)
    model.to(dev)
    if compile is not None:
        from coconut_lm.model.compiled import compile_blocks

        compile_blocks(model, compile)
    method = get_method(meta.method)
    layout = meta.layout
    # The training run's generation budget unless asked otherwise (128 when the checkpoint does not record it).
    budget = max_new_tokens if max_new_tokens is not None else meta.max_new_tokens
    task = meta.task
    examples = load_examples(data_path)[:max_examples]
    if use_classifier is None:
        use_classifier = meta.eval_use_classifier
    if use_classifier and model.eot_head is None:
        raise CoconutError(f"checkpoint {checkpoint}: has no <eot> classifier (train with eot_classifier=true)")
    if eot_thresholds and not use_classifier:
        raise CoconutError("eval: an <eot> threshold needs the classifier (--use-classifier)")
    thresholds = list(eot_thresholds or [0.5])
    # A setting is (fixed thought count, None) or (None, classifier threshold).
    settings: list[tuple[int | None, float | None]] = (
        [(None, t) for t in thresholds] + [(k, None) for k in (latents or [])] if use_classifier
        else [(k, None) for k in (latents if latents else [meta.eval_thoughts])])
    if latents and set(latents) != {meta.eval_thoughts} and not method.has_thought_slots(layout, model.tokens):
        raise CoconutError(f"eval: --latents {','.join(map(str, latents))}: checkpoint {checkpoint} is a "
                           f"'{method.name}' model, whose prompt has no thought slots, so every k would be the same "
                           f"run; leave --latents out")
    checked = check_eval_data(examples, tokenizer, task, data_path, checkpoint, any_task, meta=meta)
    data, unknown, looks_like = checked.data, checked.unknown, checked.looks_like
    limit = getattr(model, "_max_positions", None)
    most = max((meta.max_thoughts if k is None else k) for k, _ in settings)
    for i, ex in enumerate(data):  # a prompt that leaves no room for one new token cannot be answered at all
        need = len(method.eval_prompt(ex, most, layout, model.tokens)) + (2 if use_classifier else 1)
        if limit is not None and need > limit:
            raise CoconutError(f"{data_path}: item {i}: its prompt ({len(ex.question)} question tokens, {most} thoughts) "
                               f"and one new token need {need} positions, more than the model's {limit} "
                               f"(shorten the question)")
    summaries: dict[str, EvalSummary] = {}
    if overwrite:  # only now that everything checked out: a refused eval leaves the earlier results as they were
        clear_outputs(out, EVAL_OUTPUTS)
    for k, t in settings:
        name = f"k{k}" if k is not None else ("classifier" if t == 0.5 else f"classifier@{t:g}")
        result = evaluate(model, tokenizer, examples, method, layout, task, k or 0, batch_size, budget,
                          use_classifier=k is None, max_thoughts=meta.max_thoughts,
                          progress=progress, desc=f"eval {name}", data=data, eot_threshold=t or 0.5)
        where = out if len(settings) == 1 else out / name
        extra = {"checkpoint": str(checkpoint), "data": str(data_path), "method": method.name, "task": task,
                 "data_task": looks_like, "unknown_tokens": unknown.count if unknown else 0,
                 "accuracy_by_steps": accuracy_by_steps(examples, result.records)}
        if k is None:
            extra["thoughts_steps_spearman"] = spearman([r.thoughts for r in result.records],
                                                        [len(ex.steps) for ex in examples])
        write_eval(result, where, extra=extra)
        summaries[name] = result.summary
    if len(settings) > 1:
        atomic_write_text(out / "forced_k.json", json.dumps({k: asdict(s) for k, s in summaries.items()}, indent=2) + "\n")
    return summaries


def format_summaries(summaries: dict[str, EvalSummary]) -> str:
    """A text table: one row per evaluation setting."""
    rows = [f"{'setting':<16}{'n':>6}{'accuracy':>10}{'tokens':>9}{'thoughts':>10}{'cot match':>11}{'ex/s':>9}"]
    for name, s in summaries.items():
        cot = "-" if s.cot_match is None else f"{s.cot_match:.3f}"
        rows.append(f"{name:<16}{s.n:>6}{s.accuracy:>10.3f}{s.mean_tokens:>9.1f}{s.mean_thoughts:>10.1f}{cot:>11}{s.examples_per_s:>9.1f}")
    return "\n".join(rows)


@torch.no_grad()
def validation_loss(model, data, method: Method, layout: LayoutConfig, position: int, batch_size: int,
                    device: torch.device, autocast) -> float:
    """Teacher-forced NLL per supervised token of the validation set at schedule position `position`."""
    tokens = model.tokens
    total, count = torch.zeros((), device=device, dtype=torch.float64), 0
    was_training = model.training
    model.eval()
    for b in range(0, len(data), batch_size):
        layouts = [method.train_layout(ex, position, layout, tokens) for ex in data[b:b + batch_size]]
        batch = collate(layouts, tokens.pad, tokens.latent)
        if batch.n_label_tokens == 0:
            continue
        batch = batch.to(device)
        with autocast():
            out = model(batch.input_ids, batch.attention_mask, labels=batch.labels)
        total += out.loss_sum.double()
        count += out.n_label_tokens
    model.train(was_training)
    return float(total) / max(count, 1)

"""Generation evaluation, pure scoring: accuracy, tokens per answer, and a record per example.

    result = evaluate(model, tokenizer, examples, method, layout_cfg, task="prosqa", n_thoughts=6)
    result.summary.accuracy, result.records[0].text
    validation_loss(model, data, method, layout_cfg, position, batch_size, device, autocast)

Nothing here reads a checkpoint or writes a file: the `eval` command (`checkpoint_eval`) does, and
the trainer validates with these same functions.

Prompts are sorted by length and generated in batches with a KV cache (`CoconutLM.generate`).
"Tokens" follows the paper: language tokens generated (EOS included) plus continuous thoughts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from coconut_lm.data.batching import collate, left_pad
from coconut_lm.data.pipeline import tokenize_examples
from coconut_lm.eval.outputs import live_bars
from coconut_lm.recipe.methods import LayoutConfig, Method, TokenizedExample
from coconut_lm.tasks.answers import answers_match, chain_lines, extract_answer, same_chain
from coconut_lm.tasks.examples import Example


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

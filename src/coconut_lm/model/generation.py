"""Generation: the continuous thoughts, then decoding with the KV cache, each row on its own.

    gen = model.generate(prompt_ids, prompt_mask, max_new_tokens=64)   # CoconutLM.generate calls `generate`
    gen.sequences, gen.num_tokens, gen.num_thoughts

The prompt's `<latent>` slots are filled by the same passes as the training forward. With the
`<eot>` classifier the model adds thoughts one at a time until the classifier says stop, then
decodes; every row moves through thinking and decoding independently, one new position per step.

Shapes: B batch, T prompt length, L generated length, H hidden size, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from coconut_lm.errors import CoconutError
from coconut_lm.model.last_block import before_thoughts


@dataclass
class GenerationOutput:
    """What `CoconutLM.generate` returns.

    sequences: (B, L) generated token ids, padded with the pad id after each row's EOS.
    num_tokens: (B,) language tokens generated per row, EOS included.
    num_thoughts: (B,) continuous thoughts per row (prompt slots, or those the classifier chose).
    thoughts: with `return_thoughts`, one (num_thoughts[b], H) tensor per row; else None.
    """

    sequences: torch.Tensor
    num_tokens: torch.Tensor
    num_thoughts: torch.Tensor
    thoughts: list[torch.Tensor] | None = None


def default_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only real tokens, so left padding does not shift them: (B, T).

    The forward's too (`CoconutLM`, which imports it from here)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pick_tokens(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids (B,) from (B, V) logits: greedy at temperature 0, else nucleus sampling."""
    if temperature <= 0.0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the top token always survives).
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def eot_stop_logit(threshold: float) -> float:
    """The `<eot>` classifier's logit above which latent mode ends: sigmoid(z) > threshold, 0 < threshold < 1."""
    if not 0.0 < threshold < 1.0:
        raise CoconutError(f"eot threshold must be strictly between 0 and 1, got {threshold}")
    return math.log(threshold / (1.0 - threshold))


@torch.no_grad()
def generate(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, *,
             use_eot_classifier: bool = False, max_thoughts: int = 6, return_thoughts: bool = False,
             temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None,
             eot_threshold: float = 0.5) -> GenerationOutput:
    """Batched decoding of a `CoconutLM` with one KV cache; each row stops at its own EOS.

    The prompt (left or right padded) may hold `<latent>` slots, filled by the same passes as
    `forward`. With `use_eot_classifier`, each prompt ends at `<bot>` and the model adds thoughts
    until `eot_head` says stop (sigmoid > `eot_threshold`) or `max_thoughts`, then feeds `<eot>`;
    prompts without latent markers end at the question, and a row that stops decodes its first
    token from the state where it stopped (the layout of `latent_markers=false`). Rows move through
    thinking and decoding independently: at each step every row feeds one new position (a thought,
    `<eot>`, its last token, or a pad once finished), so each row's result equals what it would get
    alone. Temperature 0 decodes greedily, else nucleus sampling (`top_p`, `generator`).

    This module does not import `coconut` (which imports it): `model` is the CoconutLM whose
    passes (`_plan`, `_multipass`, `_pass`, `_shift`) it drives.
    """
    model._check_inputs(input_ids, attention_mask)
    if use_eot_classifier and model.eot_head is None:
        raise CoconutError("use_eot_classifier=True needs a model built with eot_classifier=True")
    stop_logit = eot_stop_logit(eot_threshold)
    b, t = input_ids.shape
    dev, tk = input_ids.device, model.tokens
    n_steps = max_new_tokens + (max_thoughts + 1 if use_eot_classifier else 0)
    rows = torch.arange(b, device=dev)
    # Preallocated mask: every generated position is real, so later columns are ones already.
    mask = torch.cat([attention_mask.long(), attention_mask.new_ones(b, n_steps).long()], 1)
    pos = default_position_ids(attention_mask)
    latent, bounds = model._plan(input_ids, attention_mask, pos, new_positions=n_steps)
    embed = model.base.get_input_embeddings()
    cache = model.new_cache(t + n_steps)
    embeds = embed(input_ids)
    last = t - 1 - attention_mask.long().flip(1).argmax(1)  # last real position per row
    need = None
    if model.last_block is not None:  # the prompt's states read below: each row's last, and those before thoughts
        need = before_thoughts(latent).index_put((rows, last), torch.ones_like(last, dtype=torch.bool))
    hidden = model._multipass(embeds, attention_mask, pos, latent, bounds, cache, need=need)
    h_last, next_pos = hidden[rows, last], pos[rows, last] + 1  # (B, H), (B,)
    before = None  # the token shift's predecessors of the next input: the last K real inputs
    if model.token_shift is not None:
        before = model.token_shift.predecessors(embeds, hidden, latent, attention_mask, last,
                                                silent_thoughts=not model.thoughts_send_shift)
    markers = True  # with the classifier: prompts end at <bot>, and a stop feeds <eot>
    if use_eot_classifier:
        ends_bot = input_ids[rows, last] == tk.bot
        markers = bool(ends_bot.all())
        if not markers and bool(ends_bot.any()):
            raise CoconutError("with use_eot_classifier every prompt must end with <bot> (latent markers), "
                               "or none (no markers)")

    seq = torch.full((b, max_new_tokens + 1), tk.pad, dtype=torch.long, device=dev)  # last col: dump
    n_tok = torch.zeros(b, dtype=torch.long, device=dev)
    n_thought = latent.sum(1)
    thinking = torch.full((b,), use_eot_classifier, dtype=torch.bool, device=dev)
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    steps_h, steps_m = [], []  # classifier thoughts per step, for return_thoughts
    for step in range(n_steps):
        if use_eot_classifier:
            stop = (model.eot_head(h_last).squeeze(-1) > stop_logit) | (n_thought >= max_thoughts)
            think = thinking & ~stop
            stopping = thinking & stop
            if not markers:  # a row that stops decodes from this very state
                thinking = think
        decoding = ~thinking & ~done
        tok = pick_tokens(model.logits(h_last), temperature, top_p, generator)
        seq.scatter_(1, torch.where(decoding, n_tok, max_new_tokens)[:, None], tok[:, None])
        n_tok += decoding
        done |= decoding & ((tok == tk.eos) | (n_tok >= max_new_tokens))
        ids = torch.where(decoding, tok, tk.pad)
        if use_eot_classifier:
            if markers:
                ids = torch.where(stopping, tk.eot, ids)
            n_thought += think
            steps_h.append(h_last)
            steps_m.append(think)
            thinking = think
        if bool(done.all()):  # the one host sync per step
            break
        x = embed(ids)
        if use_eot_classifier:
            x = torch.where(think[:, None], h_last.to(x.dtype), x)
        x, before = model._shift(x[:, None], None, before, think[:, None] if use_eot_classifier else None)
        h_last = model._pass(x, mask[:, : t + step + 1], next_pos[:, None], cache)[:, -1]
        next_pos = next_pos + 1

    thoughts = None
    if return_thoughts:
        thoughts = [hidden[i, latent[i].nonzero().flatten() - 1] for i in range(b)]
        if steps_h:
            hs, ms = torch.stack(steps_h, 1), torch.stack(steps_m, 1)  # (B, S, H), (B, S)
            thoughts = [torch.cat([thoughts[i], hs[i][ms[i]]]) for i in range(b)]
    width = int(n_tok.max()) if b else 0
    return GenerationOutput(sequences=seq[:, :width], num_tokens=n_tok, num_thoughts=n_thought, thoughts=thoughts)

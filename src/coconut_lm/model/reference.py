"""Slow, plainly correct Coconut: the yardstick for the model tests and the `coconut-lm bench` baseline.

Forward: for each latent column, recompute the WHOLE sequence with no cache and fill that column's
thoughts from the last hidden states; the loss and logits come from a final full pass. Generation:
one row at a time, no padding, no cache, everything recomputed for each new position.

    ref = reference_forward(model, input_ids, attention_mask, labels)     # ref.loss, ref.logits
    gen = reference_generate(model, [5, 9, 3, bot, latent, latent, eot], max_new_tokens=8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from coconut_lm.model.coconut import CoconutLM


@dataclass
class RefForward:
    loss: torch.Tensor | None
    logits: torch.Tensor
    eot_loss: torch.Tensor | None
    hidden: torch.Tensor  # (B, T, H) last-layer hidden states of the final pass


@dataclass
class RefGeneration:
    tokens: list[int]  # generated ids, EOS included when reached
    num_thoughts: int
    thoughts: list[torch.Tensor]


def _full_pass(model: CoconutLM, vectors: list[list[torch.Tensor]], attention_mask: torch.Tensor,
               position_ids: torch.Tensor, thought: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Recompute every position from scratch; returns (logits, last hidden states). `thought` (B, T)
    marks the thought positions: the token shift leaves them unshifted unless `model.thoughts_receive_shift`,
    and counts them as zero among the predecessors unless `model.thoughts_send_shift`."""
    embeds = torch.stack([torch.stack(row) for row in vectors])  # (B, T, H)
    if model.token_shift is not None:  # x_t + W [x_{t-1}; ...; x_{t-K}], padded and missing ones are zero
        counts = attention_mask.bool() if model.thoughts_send_shift else attention_mask.bool() & ~thought
        real = embeds * counts[..., None].to(embeds.dtype)
        t = real.shape[1]
        prev = [F.pad(real, (0, 0, j, 0))[:, :t] for j in range(1, model.shift_width + 1)]
        shift = model.token_shift(torch.cat(prev, -1))
        if not model.thoughts_receive_shift:
            shift = shift * (~thought)[..., None].to(shift.dtype)
        embeds = embeds + shift
    out = model.base(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                     output_hidden_states=True, use_cache=False)
    return out.logits, out.hidden_states[-1]


def reference_forward(model: CoconutLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> RefForward:
    """Coconut forward by full recomputation, one pass per latent column (no cache, Python loops)."""
    tk = model.tokens
    if position_ids is None:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    table = model.base.get_input_embeddings()
    b, t = input_ids.shape
    vectors = [[table(input_ids[i, j]) for j in range(t)] for i in range(b)]
    slots = [(i, j) for i in range(b) for j in range(t)
             if input_ids[i, j] == tk.latent and attention_mask[i, j] == 1]
    thought = (input_ids == tk.latent) & attention_mask.bool()
    for col in sorted({j for _, j in slots}):
        _, hidden = _full_pass(model, vectors, attention_mask, position_ids, thought)
        for i, j in slots:
            if j == col:
                vectors[i][j] = hidden[i, j - 1]
    logits, hidden = _full_pass(model, vectors, attention_mask, position_ids, thought)

    loss = None
    if labels is not None:
        flat = logits[:, :-1].reshape(-1, logits.shape[-1])
        loss = F.cross_entropy(flat, labels[:, 1:].reshape(-1), ignore_index=-100)

    eot_loss = None
    if model.eot_head is not None:
        # The classifier decides at <bot>, at each <latent> and at the input before a <latent> (no markers:
        # the last question token); latent mode should end where the next input is not a <latent>.
        terms = []
        for i in range(b):
            for j in range(t):
                next_latent = j + 1 < t and int(input_ids[i, j + 1]) == tk.latent
                if attention_mask[i, j] == 1 and (int(input_ids[i, j]) in (tk.bot, tk.latent) or next_latent):
                    z = model.eot_head(hidden[i, j])[0]
                    terms.append(F.binary_cross_entropy_with_logits(z, torch.tensor(float(not next_latent),
                                                                                     dtype=z.dtype)))
        eot_loss = torch.stack(terms).mean() if terms else None
    return RefForward(loss=loss, logits=logits, eot_loss=eot_loss, hidden=hidden)


@torch.no_grad()
def reference_generate(model: CoconutLM, prompt: list[int], max_new_tokens: int, use_eot_classifier: bool = False,
                       max_thoughts: int = 6, eot_threshold: float = 0.5) -> RefGeneration:
    """Greedy decoding for one unpadded prompt, recomputing the whole sequence at every step; with the
    classifier, thinking stops once sigmoid(eot_head(h)) > eot_threshold or at max_thoughts."""
    tk = model.tokens
    table = model.base.get_input_embeddings()
    device = next(model.parameters()).device

    def run(vecs):
        n = len(vecs)
        mask = torch.ones(1, n, dtype=torch.long, device=device)
        pos = torch.arange(n, device=device)[None]
        logits, hidden = _full_pass(model, [vecs], mask, pos, torch.tensor([is_thought], device=device))
        return logits[0, -1], hidden[0, -1]

    vecs, thoughts, is_thought = [], [], []  # is_thought[j]: vecs[j] is a continuous thought
    for tok in prompt:
        if tok == tk.latent:
            thought = run(vecs)[1]
            thoughts.append(thought)
            vecs.append(thought)
        else:
            vecs.append(table(torch.tensor(tok, device=device)))
        is_thought.append(tok == tk.latent)
    if use_eot_classifier:
        markers = bool(prompt) and prompt[-1] == tk.bot  # without markers a stop decodes from that state
        while True:
            h = run(vecs)[1]
            if torch.sigmoid(model.eot_head(h)[0]) > eot_threshold or len(thoughts) >= max_thoughts:
                if markers:
                    vecs.append(table(torch.tensor(tk.eot, device=device)))
                    is_thought.append(False)
                break
            thoughts.append(h)
            vecs.append(h)
            is_thought.append(True)
    tokens: list[int] = []
    while len(tokens) < max_new_tokens:
        tok = int(run(vecs)[0].argmax())
        tokens.append(tok)
        if tok == tk.eos:
            break
        vecs.append(table(torch.tensor(tok, device=device)))
        is_thought.append(False)
    return RefGeneration(tokens=tokens, num_thoughts=len(thoughts), thoughts=thoughts)

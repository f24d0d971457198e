"""CoconutLM: an unmodified HF causal LM that can think in continuous thoughts.

A `<latent>` slot at position t takes, as its input embedding, the last-layer hidden state (after
the final norm) at position t-1. With latent slots at columns p_1 < ... < p_n (the union over
rows), the forward runs n+1 passes over one KV cache: [0, p_1), [p_1, p_2), ..., [p_n, T). Each
pass computes only its new positions, puts the thoughts in with one out-of-place `torch.where`,
and gradients flow through all passes. The LM head runs only where a loss or an output needs it.

An optional token shift on the backbone's inputs (`token_shift=K`, not in the paper) lives in
`token_shift.py`; generation (the thoughts, then decoding with the KV cache) in `generation.py`;
the summed losses (cross-entropy on the supervised positions, the `<eot>` classifier's BCE) in `loss.py`.

    model = CoconutLM(build_backbone("tiny", len(tok)), special_token_ids(tok))
    out = model(batch.input_ids, batch.attention_mask, labels=batch.labels)   # out.loss, out.n_passes
    gen = model.generate(prompt_ids, prompt_mask, max_new_tokens=64)         # gen.sequences
    hidden = model.hidden_states(batch.input_ids, batch.attention_mask)      # (B, T, H), no LM head
    model.save_pretrained("runs/x/ckpt", meta={"method": "coconut", "stage": 3, "c": 1})
    model = CoconutLM.from_pretrained("runs/x/ckpt")

Shapes: B batch, T sequence, H hidden size, V vocabulary, N supervised positions.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from coconut_lm.errors import CoconutError
from coconut_lm.model.files import (  # noqa: F401  (the folder format's names, also importable from here)
    COCONUT_JSON,
    EOT_HEAD_FILE,
    FORMAT_VERSION,
    TOKEN_SHIFT_FILE,
    CheckpointInfo,
    load_folder,
    read_checkpoint_info,
    read_meta,
    save_folder,
)
from coconut_lm.model.generation import GenerationOutput, default_position_ids, generate
from coconut_lm.model.kv_cache import new_cache
from coconut_lm.model.last_block import LastBlockPruning, Selection, needed_positions, pass_selections
from coconut_lm.model.loss import summed_nll, summed_stop_bce
from coconut_lm.model.shift_modes import ShiftThoughts, parse_shift_thoughts, thoughts_receive, thoughts_send
from coconut_lm.model.token_shift import TokenShift
from coconut_lm.recipe.tokens import SpecialTokens


@dataclass
class CoconutOutput:
    """What `CoconutLM.forward` returns: summed losses and their counts; whoever averages divides once.

    loss_sum: summed NLL over labels != IGNORE (-100; label t predicted at t-1), or None without labels.
    n_label_tokens: the supervised positions behind `loss_sum`.
    logits: (B, T, V) when `return_logits`, else None.
    eot_loss_sum: the `<eot>` classifier's summed BCE over its decisions, or None without a classifier.
    n_eot_decisions: the decisions behind `eot_loss_sum` (`loss.stop_decision_mask`).
    n_passes: backbone passes run (number of distinct latent columns + 1).

    `loss` and `eot_loss` are the means over this batch alone (0 for an empty one, still in the graph);
    the trainer divides the sums by the global batch's counts instead, so any split gives the same gradient.
    """

    loss_sum: torch.Tensor | None
    logits: torch.Tensor | None
    eot_loss_sum: torch.Tensor | None
    n_passes: int
    n_label_tokens: int = 0
    n_eot_decisions: int = 0

    @property
    def loss(self) -> torch.Tensor | None:
        """Mean NLL per supervised position of this batch, or None without labels."""
        return None if self.loss_sum is None else self.loss_sum / max(self.n_label_tokens, 1)

    @property
    def eot_loss(self) -> torch.Tensor | None:
        """The `<eot>` classifier's mean BCE per decision of this batch, or None without a classifier."""
        return None if self.eot_loss_sum is None else self.eot_loss_sum / max(self.n_eot_decisions, 1)


class CoconutLM(nn.Module):
    """Coconut around any HF causal LM (`base`), which stays unmodified and HF-loadable.

    `tokens` gives the special ids; `eot_classifier=True` adds `eot_head`, a linear probe on the
    latent state that predicts when to emit `<eot>`; `token_shift=K` adds `token_shift` (`TokenShift`;
    0: none), and `shift_thoughts` says which of its paths pass through thought positions: True both,
    False neither (the faithful variant), "receive" or "send" one (`shift_modes`).
    """

    def __init__(self, base: nn.Module, tokens: SpecialTokens, eot_classifier: bool = False,
                 token_shift: int = 0, shift_thoughts: ShiftThoughts = True):
        super().__init__()
        self.base = base
        self.tokens = tokens
        body = base.get_decoder() if hasattr(base, "get_decoder") else base.base_model
        # Kept out of the module registry: its parameters already belong to `base`.
        self.__dict__["body"] = body
        if body is base:  # the LM head is applied here; the body must return hidden states
            raise CoconutError(f"cannot find the transformer body of {type(base).__name__}")
        hidden = base.get_input_embeddings().weight.shape[1]
        param = next(base.parameters())
        self.eot_head = nn.Linear(hidden, 1, device=param.device, dtype=param.dtype) if eot_classifier else None
        if int(token_shift) < 0:
            raise CoconutError(f"token_shift must be >= 0, got {token_shift}")
        self.shift_width = int(token_shift)
        self.shift_thoughts = shift_thoughts
        self.token_shift = None
        if self.shift_width:
            self.token_shift = TokenShift(hidden, self.shift_width, float(getattr(base.config, "initializer_range", 0.02)),
                                          device=param.device, dtype=param.dtype)
        # transformers renamed `past_key_values` to `cache` (5.2x); pass whichever this one takes.
        params = inspect.signature(self.body.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        cfg = base.config
        self._softcap = getattr(cfg, "final_logit_softcapping", None)
        self._logit_scale = getattr(cfg, "logit_scale", None)
        # Learned absolute positions (GPT-2) fail with an index error deep in torch past the table.
        self._max_positions = getattr(cfg, "n_positions", None)
        self.kv_buffer = True  # see new_cache
        self.last_block: LastBlockPruning | None = None  # set by last_block.prune_last_block

    @property
    def shift_thoughts(self) -> ShiftThoughts:
        """Which token-shift paths pass through thoughts: True, False, "receive" or "send" (`shift_modes`)."""
        return self._shift_thoughts

    @shift_thoughts.setter
    def shift_thoughts(self, value: ShiftThoughts) -> None:
        try:
            self._shift_thoughts = parse_shift_thoughts(value)
        except ValueError as e:
            raise CoconutError(str(e)) from None

    @property
    def thoughts_receive_shift(self) -> bool:
        """Whether a thought's own input gets the shift of its predecessors (h + W x_prev)."""
        return thoughts_receive(self.shift_thoughts)

    @property
    def thoughts_send_shift(self) -> bool:
        """Whether a thought counts as a predecessor of the inputs after it (W h on the next one)."""
        return thoughts_send(self.shift_thoughts)

    # ----- backbone passes -------------------------------------------------------------------

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The base model's LM head on hidden states (..., H) -> (..., V); also decodes thoughts."""
        out = self.base.get_output_embeddings()(hidden)
        if self._logit_scale is not None:
            out = out * self._logit_scale
        if self._softcap is not None:
            out = torch.tanh(out / self._softcap) * self._softcap
        return out

    def _pass(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache,
              selection: Selection | None = None) -> torch.Tensor:
        """One backbone pass over new positions x (B, q, H) -> last hidden states (B, q, H).

        With a `selection` (a pruned last block, `last_block`) only its positions' states are exact.
        """
        kw = {self._cache_kw: cache, "use_cache": cache is not None}
        pruning = contextlib.nullcontext() if selection is None else self.last_block.selecting(selection)
        with pruning:
            return self.body(inputs_embeds=x, attention_mask=mask, position_ids=pos, **kw).last_hidden_state

    def _shift(self, x: torch.Tensor, real: torch.Tensor | None, before: torch.Tensor | None,
               thought: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The token shift of new inputs x (B, q, H) (`TokenShift.shift`), or x as is without one.

        `thought` (B, q) marks the thoughts among x: unshifted unless they receive the shift, silent
        (zero as predecessors) unless they send it.
        """
        if self.token_shift is None:
            return x, None
        return self.token_shift.shift(x, real, before, unshifted=None if self.thoughts_receive_shift else thought,
                                      silent=None if self.thoughts_send_shift else thought)

    def _multipass(self, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                   latent: torch.Tensor, bounds: list[int], cache=None,
                   need: torch.Tensor | None = None) -> torch.Tensor:
        """Run the passes [bounds[i], bounds[i+1]) and return all last hidden states (B, T, H).

        Every pass after the first starts at a latent column s; rows with a slot there take the
        previous pass's last hidden state (position s-1) as the input at s. Each row's thought
        depends only on its own prefix, so rows with slots elsewhere are unaffected. `need` (B, T)
        (`last_block.needed_positions`, with a pruned last block) limits the exact states to its positions.
        """
        selections = [None] * (len(bounds) - 1) if need is None else pass_selections(need, mask, bounds)
        if len(bounds) == 2:  # no thoughts: one ordinary forward pass
            return self._pass(self._shift(embeds, mask, None)[0], mask, pos, cache, selections[0])
        if cache is None:
            cache = self.new_cache(embeds.shape[1])
        hs: list[torch.Tensor] = []
        before = None  # the token shift's predecessor of each pass's first input
        # One split, not a slice per pass: a slice's backward zero-fills a (B, T, H) gradient every pass.
        pieces = embeds.split([e - s for s, e in zip(bounds[:-1], bounds[1:])], 1)
        for s, e, x, selection in zip(bounds[:-1], bounds[1:], pieces, selections):  # x: (B, e-s, H)
            if hs:
                # latent[:, s:e] is True only at column s: later slots start later passes.
                x = torch.where(latent[:, s:e, None], hs[-1][:, -1:], x)
            x, before = self._shift(x, mask[:, s:e], before, latent[:, s:e])
            hs.append(self._pass(x, mask[:, :e], pos[:, s:e], cache, selection))
        return torch.cat(hs, 1)

    def new_cache(self, capacity: int):
        """A KV cache for up to `capacity` positions (see `kv_cache.new_cache`; `kv_buffer=False`: stock)."""
        return new_cache(self.base.config, capacity, buffered=self.kv_buffer)

    def _plan(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
              split_columns: list[int] | None = None, new_positions: int = 0) -> tuple[torch.Tensor, list[int]]:
        """Latent-slot mask (B, T) and pass boundaries, after the length check; the one host sync of a forward.

        The length that must fit a learned position table is the largest real position (plus the
        `new_positions` generation will add), not the padded width: rows padded to a common width
        may each fit.
        """
        latent = (input_ids == self.tokens.latent) & attention_mask.bool()
        host = latent.any(0).long()  # (T,)
        check = self._max_positions is not None and position_ids.numel() > 0
        if check:  # ride along with the latent columns in the same transfer
            host = torch.cat([host, position_ids.max().long().view(1) + 1])
        host = host.tolist()
        if check:
            self._check_length(host.pop() + new_positions)
        cols = [c for c, is_latent in enumerate(host) if is_latent]
        if split_columns:
            cols = sorted(set(cols).union(c for c in split_columns if 0 < c < input_ids.shape[1]))
        if cols and cols[0] == 0:
            raise CoconutError("a <latent> slot is the first position of a row; it needs a token before it")
        if self.training and cols and _activation_checkpointing(self.base):
            raise CoconutError("HF's gradient checkpointing drops the KV cache that thoughts need; turn it off and "
                               "use coconut_lm.model.checkpointing.checkpoint_blocks (gradient_checkpointing=true), "
                               "which keeps it")
        return latent, [0, *cols, input_ids.shape[1]]

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor | None = None) -> None:
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise CoconutError(f"input_ids {tuple(input_ids.shape)} and attention_mask "
                               f"{tuple(attention_mask.shape)} must both be (batch, length)")
        if labels is not None and labels.shape != input_ids.shape:
            raise CoconutError(f"labels {tuple(labels.shape)} must match input_ids {tuple(input_ids.shape)}")

    def _check_length(self, length: int) -> None:
        """Refuse positions past a learned position table (GPT-2), which fails deep in torch otherwise."""
        if self._max_positions is not None and length > self._max_positions:
            raise CoconutError(f"a sequence of {length} positions exceeds the model's "
                               f"n_positions={self._max_positions}")

    # ----- forward and loss ---------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                return_logits: bool = False, split_columns: list[int] | None = None) -> CoconutOutput:
        """Multi-pass forward; see the module docstring. Padding may be left, right or both.

        `split_columns` adds pass boundaries (the result is the same): sharded data-parallel
        training (FSDP) passes the union of every rank's latent columns so all ranks run the same
        number of passes in lockstep.
        """
        self._check_inputs(input_ids, attention_mask, labels)
        need = None
        if self.last_block is not None and labels is not None and not return_logits:
            need = needed_positions(input_ids, attention_mask, labels, self.tokens, self.eot_head is not None)
        hidden, n_passes = self._hidden(input_ids, attention_mask, position_ids, split_columns, need)
        logits = self.logits(hidden) if return_logits else None
        vocab = self.base.get_output_embeddings().weight.shape[0]
        loss, n_label = (None, 0) if labels is None else summed_nll(hidden, labels, logits, self.logits, vocab)
        eot_loss, n_eot = ((None, 0) if self.eot_head is None
                           else summed_stop_bce(hidden, input_ids, attention_mask, self.tokens, self.eot_head))
        return CoconutOutput(loss_sum=loss, logits=logits, eot_loss_sum=eot_loss, n_passes=n_passes,
                             n_label_tokens=n_label, n_eot_decisions=n_eot)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden states (B, T, H) of `forward`'s passes, before any head.

        For reading a few positions: `self.logits(hidden[rows, cols])` costs (N, V), not (B, T, V).
        """
        self._check_inputs(input_ids, attention_mask)
        return self._hidden(input_ids, attention_mask, position_ids)[0]

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None,
                split_columns: list[int] | None = None, need: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(last hidden states (B, T, H), number of passes) of the multi-pass forward; exact where `need` is
        (all positions without it)."""
        if position_ids is None:
            position_ids = default_position_ids(attention_mask)
        latent, bounds = self._plan(input_ids, attention_mask, position_ids, split_columns)
        embeds = self.base.get_input_embeddings()(input_ids)  # (B, T, H)
        return self._multipass(embeds, attention_mask, position_ids, latent, bounds, need=need), len(bounds) - 1

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, *,
                 use_eot_classifier: bool = False, max_thoughts: int = 6, return_thoughts: bool = False,
                 temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None,
                 eot_threshold: float = 0.5) -> GenerationOutput:
        """Batched decoding with one KV cache; each row stops at its own EOS. Call `model.eval()` first.

        `generation.generate` documents the arguments: the thoughts (the prompt's `<latent>` slots, or
        the `<eot>` classifier's own count), then greedy or sampled decoding.
        """
        return generate(self, input_ids, attention_mask, max_new_tokens, use_eot_classifier=use_eot_classifier,
                        max_thoughts=max_thoughts, return_thoughts=return_thoughts, temperature=temperature,
                        top_p=top_p, generator=generator, eot_threshold=eot_threshold)

    def save_pretrained(self, path: str | os.PathLike, meta: dict[str, Any] | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write an HF folder (loadable by `AutoModelForCausalLM` alone) plus `coconut.json`.

        `state_dict` (this module's keys, e.g. gathered from FSDP shards) replaces the live weights.
        An existing folder is updated file by file, `coconut.json` last (`model_files.save_folder`).
        """
        save_folder(self, path, meta, state_dict)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **load_kwargs: Any) -> CoconutLM:
        """Load a folder written by `save_pretrained`; keyword arguments go to the backbone loader."""
        return load_folder(cls, path, **load_kwargs)


def _activation_checkpointing(base: nn.Module) -> bool:
    # Renamed from `is_gradient_checkpointing` in transformers 5.2x; read whichever exists.
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(base), name):
            return bool(getattr(base, name))
    return False

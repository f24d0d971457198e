"""Coconut's special tokens: `<bot>` and `<eot>` open and close latent mode, `<latent>` marks a
continuous-thought slot, `<pause>` is the pause-token baseline's filler, plus a pad and an
end-of-sequence token. The method layouts are written in these ids; the tokenizers (coconut_lm.data)
add the strings to a vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

BOT, EOT, LATENT, PAUSE, PAD, EOS, UNK = "<bot>", "<eot>", "<latent>", "<pause>", "<pad>", "<eos>", "<unk>"
COCONUT_TOKENS = (BOT, EOT, LATENT, PAUSE)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the tokens Coconut needs; saved in `coconut.json` with every checkpoint."""

    bot: int
    eot: int
    latent: int
    pause: int
    pad: int
    eos: int

    def to_dict(self) -> dict[str, int]:
        """A plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> SpecialTokens:
        """Rebuild from `to_dict` output."""
        return cls(**{k: int(d[k]) for k in ("bot", "eot", "latent", "pause", "pad", "eos")})


def stop_decisions(ids: Sequence[int], tokens: SpecialTokens) -> list[int]:
    """Where the `<eot>` classifier decides whether latent mode ends, in one layout's ids: at every `<bot>`
    and `<latent>`, and at the input just before a `<latent>` (without markers, the last question token).
    Latent mode ends at the last of them: the next input is not a `<latent>` (`<eot>`, or the first step).
    The model's `stop_decision_mask` is the same rule on padded batches."""
    return [j for j, t in enumerate(ids)
            if t in (tokens.bot, tokens.latent) or (j + 1 < len(ids) and ids[j + 1] == tokens.latent)]

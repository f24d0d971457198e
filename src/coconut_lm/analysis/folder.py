"""What `coconut-lm analyze` writes into its output folder: the names it owns and the result listing them.

The folder's layout is in `analysis.run`'s docstring; `--overwrite` removes the files matching
`ANALYSIS_OUTPUTS` first, so an earlier analysis leaves nothing stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: What `analyze` writes into its --out (`analysis.run`'s docstring); `--overwrite` removes these first.
ANALYSIS_OUTPUTS = re.compile(r"forced_k|reference|path_categories\.jsonl?|latent_search\.jsonl|"
                              r"latent_search_summary\.json|thoughts\.json|figures|analysis\.md|settings\.json|"
                              r"probes\.jsonl|probes_summary\.json|walkthrough\.jsonl|report\.html|"
                             r"own_stop|own_stop\.jsonl|own_stop_summary\.json")


@dataclass
class AnalysisResult:
    """What `run_analysis` wrote: the output folder, its files and figures, and accuracy per setting."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    html: Path | None = None

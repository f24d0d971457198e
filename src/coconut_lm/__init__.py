"""coconut-lm: Chain of Continuous Thought (Hao et al. 2024) as a library and a CLI.

The data flows one way: task -> examples -> method layout -> batch -> model passes -> loss or
generation -> metrics and analysis, one folder per step (docs/architecture.md). See README.md for the commands.
"""

from coconut_lm.errors import CoconutError

__version__ = "0.1.0"

__all__ = ["CoconutError", "__version__"]

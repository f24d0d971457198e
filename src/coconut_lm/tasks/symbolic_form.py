"""The markers of the symbolic form, shared by symbolic ProsQA (`tasks.symbolic`), symbolic ProntoQA
(`tasks.symbolic_prontoqa`) and the recall task: an example in that form carries `"format": "symbolic"`,
its facts are separated by `|`, and its query follows `[Q]` (ProsQA's root follows `[R]`).
"""

SYMBOLIC = "symbolic"
EDGE_SEP, QUERY, ROOT = "|", "[Q]", "[R]"

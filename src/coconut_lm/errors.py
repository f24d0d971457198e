"""The one exception type users see.

Anything caused by bad input (a malformed file, an unknown option, an over-long sequence) raises
`CoconutError` with a one-line message. The CLI prints it as `error: ...` and exits with status 2,
so bad input never ends in a traceback from deep inside torch.
"""


class CoconutError(Exception):
    """A user-facing error: its message is one line that says what is wrong and where."""

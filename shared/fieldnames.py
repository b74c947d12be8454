"""What a field name looks like: ours are ASCII identifiers. An unknown key unlike one (a
caller's number, a name: a members file exported without its header row) is the sender's
data, not a misspelt field, and no error, log or dead letter's reason names it back.

Apart from shared.http (which says so over HTTP) so that domain code, which imports no
transport, judges keys by the same rule.
"""

from __future__ import annotations

import re

FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def is_field_name(key: object) -> bool:
    """Whether `key` may be named back in an error: it looks like a field name."""
    return isinstance(key, str) and FIELD_NAME.match(key) is not None

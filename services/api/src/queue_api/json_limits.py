"""What a JSON body may hold beyond what its schema says: how deeply it nests, and whether its
text is something PostgreSQL can store.

Both checks first look at the raw bytes with a C-speed count or search and do real work only
when those bytes could break a limit, so an ordinary body pays next to nothing for them.
"""

import json
import re
from typing import Final

from queue_core.limits import unstorable_text_at as value_unstorable_at

# The deepest nesting of arrays and objects a body may have, its own outer object included: a
# job's payload object sits at level 2, so its contents may nest 30 levels more (a batch's, 28).
# No real payload comes close. Without a bound, msgspec gives up near 1,000 levels with a
# RecursionError (a 500), and jsonb stores nesting far deeper than any worker could decode.
MAX_JSON_DEPTH: Final = 32

# A JSON string, escapes included, so that brackets inside strings are not counted. An
# unterminated one runs to the end of the body: were it not matched, the search would start
# again at every quote inside it, and a body of escaped quotes would cost quadratic time.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_TO_SQUARE: Final = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS: Final = bytes(sorted(set(range(256)) - set(b"[]{}")))

# Every way JSON can spell a NUL character or a UTF-16 surrogate: as an escape (hex digits in
# either case). Raw control bytes and invalid UTF-8 are malformed JSON, which the decoder refuses.
_SUSPECT_ESCAPE: Final = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")

JsonPath = tuple[str | int, ...]


def nested_too_deeply(body: bytes) -> bool:
    """Whether the arrays and objects of ``body`` nest deeper than :data:`MAX_JSON_DEPTH`."""
    # A body with no more opening brackets than the limit cannot nest deeper than the limit,
    # whatever its strings hold: ordinary bodies stop here.
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    # Keep only the brackets outside strings, all as [ and ]. Each pass deletes every innermost
    # pair: one level off every branch.
    brackets = _JSON_STRING.sub(b"", body).translate(_TO_SQUARE, _NOT_BRACKETS)
    for passes in range(MAX_JSON_DEPTH):
        # Every opener left has survived `passes` passes, so it holds more than `passes` levels;
        # a run of n openers is n values nested in one another, the body at least n + passes
        # deep. This ends the usual attack, one long chain, at the first look.
        if b"[" * (MAX_JSON_DEPTH + 1 - passes) in brackets:
            return True
        if b"[]" not in brackets:
            # Nothing left, or only unmatched brackets: malformed JSON, which the decoder reports.
            return False
        brackets = brackets.replace(b"[]", b"")
    return b"[" in brackets


def unstorable_text_at(body: bytes) -> JsonPath | None:
    """The path to the first string (member name or value) of ``body`` holding a character
    PostgreSQL's text and jsonb cannot store, a NUL or a lone surrogate; None if there is none.

    Call it only on a body that :func:`nested_too_deeply` accepted."""
    if _SUSPECT_ESCAPE.search(body) is None:
        return None
    try:
        # The standard library, because msgspec refuses lone surrogates as malformed JSON
        # without saying where they are.
        document = json.loads(body.decode())
    except ValueError:  # malformed, or beyond what json reads: the strict decoder reports it
        return None
    return value_unstorable_at(document)

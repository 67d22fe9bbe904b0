"""Hypothesis strategies for hostile input, shared by the fuzz tests, and
the checks every stored piece of user text must pass."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import strategies as st

#: Characters that break naive code: controls and NUL, lone surrogates,
#: bidi embeddings/overrides/isolates and marks, zero-width and other
#: invisible characters, unusual spaces and line separators, characters
#: whose NFC form or lower case is longer than themselves, combining marks
#: alone, markup and spreadsheet-formula starters, astral and private-use
#: characters and non-characters.
HOSTILE_CHARS = (
    "\x00\x01\x08\x0b\x0c\x1b\x1f\x7f\x85\x9f"
    "\ud800\udbff\udc00\udfff"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u3164\u2800"
    " \t\n\r\u00a0\u3000\u2028\u2029"
    "\ufb2c\u0958\u2adc\U0001d15e\u0344İ"
    "\u0301\u20dd"
    "<>&\"'=+-@;,\\"
    "李华认证😀\U0010ffff\uffff\ue000"
    "az09"
)

BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def hostile_text(*, max_size: int = 40) -> st.SearchStrategy[str]:
    """Short strings mixing the hostile characters with any others."""
    return st.text(
        alphabet=st.one_of(st.sampled_from(HOSTILE_CHARS), st.characters()), max_size=max_size
    )


#: The hostile characters a question may legitimately hold: no controls
#: (but newline and tab), no lone surrogates, no bidi controls.
STORABLE_CHARS = "".join(
    c
    for c in HOSTILE_CHARS
    if c in "\n\t" or (unicodedata.category(c) not in ("Cc", "Cs") and c not in BIDI_CONTROLS)
)


def storable_text(*, max_size: int = 60) -> st.SearchStrategy[str]:
    """Strange but acceptable question text: zero-width and combining
    characters, odd spaces, characters NFC rewrites, markup, astral."""
    return st.text(
        alphabet=st.one_of(
            st.sampled_from(STORABLE_CHARS),
            st.characters(exclude_categories=["Cc", "Cs"], exclude_characters=BIDI_CONTROLS),
        ),
        max_size=max_size,
    )


def long_text(*, up_to: int = 2**20) -> st.SearchStrategy[str]:
    """Strings at and beyond every length limit that matters: the form
    fields (200, 254, 300), questions (500), answers (2000), a websocket
    frame (16 KiB) and a megabyte; in 1-, 2-, 3- and 4-byte characters, in
    characters that grow under NFC and in invisible ones."""
    counts = [199, 200, 201, 254, 255, 300, 301, 499, 500, 501, 2001, 16 * 1024, 2**20]
    return st.builds(
        lambda char, count: char * count,
        st.sampled_from(["x", "é", "李", "😀", "\ufb2c", " ", "\u200b"]),
        st.sampled_from([count for count in counts if count <= up_to]),
    )


def any_text(*, up_to: int = 2**20) -> st.SearchStrategy[str]:
    return st.one_of(
        hostile_text(), long_text(up_to=up_to), st.sampled_from(["", " ", "\x00", "\ud800"])
    )


#: Every kind of JSON value, with huge and non-finite numbers.
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=2**53 - 2, max_value=2**64 + 2),
        st.integers(min_value=10**30, max_value=10**40),
        st.integers(max_value=-(2**63) + 1, min_value=-(2**64)),
        st.floats(allow_nan=True, allow_infinity=True),
        hostile_text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(hostile_text(max_size=8), children, max_size=4),
    ),
    max_leaves=12,
)


def visible(char: str) -> bool:
    """Shows as something: not a control, format, private-use, space or
    separator code point, not a lone combining mark, not a blank letter."""
    return (
        unicodedata.category(char)[0] not in "CZM" and char not in "\u115f\u1160\u3164\uffa0\u2800"
    )


def assert_clean_text(value: str, *, min_length: int = 1, max_length: int) -> None:
    """What every stored piece of user text must satisfy: trimmed, within
    its limits, NFC, with a visible character when required, free of NUL,
    controls, lone surrogates and bidi controls, and encodable as UTF-8."""
    assert isinstance(value, str), value
    assert min_length <= len(value) <= max_length, (len(value), value[:80])
    assert value == value.strip(), repr(value[:80])
    assert unicodedata.is_normalized("NFC", value), repr(value[:80])
    value.encode("utf-8")  # raises on a lone surrogate
    assert "\x00" not in value
    assert not BIDI_CONTROLS & set(value), repr(value[:80])
    assert all(unicodedata.category(c) != "Cc" or c in "\n\t" for c in value), repr(value[:80])
    if min_length:
        assert any(visible(c) for c in value), repr(value[:80])


def json_text(value: object, *, ascii_only: bool) -> str:
    """JSON text for ``value``: with ``ascii_only``, lone surrogates travel
    as ``\\ud800`` escapes; without, as raw code points."""
    return json.dumps(value, ensure_ascii=ascii_only)

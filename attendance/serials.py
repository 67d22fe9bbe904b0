"""Certificate serial numbers: ``TX-2020-7K4M-9QPX``.

``TX``, the year the session was held, then seven random characters and one
check character, written in two groups of four. The serial is what a person
reads off a printout and types into the verification page, so:

* **Alphabet.** Crockford's base 32, ``0123456789ABCDEFGHJKMNPQRSTVWXYZ``:
  no I, L, O or U. Instead of dropping 0 and 1 as well, look-alikes are
  *read* the Crockford way: whatever a person types, ``O`` counts as ``0``
  and ``I``/``L`` as ``1`` (lower case too), so misreading a printed 0 or 1
  never matters, and all 32 symbols keep their 5 bits each (7 random
  characters: 32**7 ≈ 3.4e10 serials a year, never handed out in order).

* **Check character.** The year's four digits and the seven random
  characters, as symbols of the field GF(32), are weighted by successive
  powers of a primitive element ``α`` and summed; the check character is
  the symbol that brings the sum of the whole serial to zero (one check
  symbol of a Reed–Solomon code, evaluated the Horner way below). Every
  weight is a distinct non-zero field element, so the check catches every
  single wrong character (year, random part or the check character
  itself), every transposition of two characters, adjacent or not, and
  every twin error (``77`` typed as ``KK``). Luhn mod 32 would miss
  swapping ``0`` and ``Z`` next to each other.
"""

from __future__ import annotations

import re
import secrets
import unicodedata

__all__ = ["ALPHABET", "SERIAL_RE", "is_valid", "new_serial", "normalise"]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "TX"
RANDOM_LENGTH = 7

#: A canonical serial, as stored and printed (use ``fullmatch``).
SERIAL_RE = re.compile(r"TX-(\d{4})-([0-9A-HJKMNP-TV-Z]{4})-([0-9A-HJKMNP-TV-Z]{4})", re.ASCII)

_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
# Crockford's decoding of the letters the alphabet leaves out.
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})

# GF(2**5) with the primitive polynomial x**5 + x**2 + 1; α = x.
_MODULUS = 0b100101


def _times_alpha(value: int) -> int:
    value <<= 1
    if value & 0b100000:
        value ^= _MODULUS
    return value


def _syndrome(values: list[int]) -> int:
    """Σ values[i]·α**(n-1-i) in GF(32): zero for a serial with a good check
    character. α has order 31, so the weights of up to 31 symbols are
    distinct and non-zero."""
    total = 0
    for value in values:
        total = _times_alpha(total) ^ value
    return total


def _check_symbol(year_digits: str, random_part: str) -> str:
    values = [int(d) for d in year_digits] + [_VALUE[c] for c in random_part]
    # The check character gets weight α**0 = 1: the sum up to it, times α,
    # plus the check value must be zero, and in GF(2**k) minus is plus.
    return ALPHABET[_times_alpha(_syndrome(values))]


def new_serial(year: int) -> str:
    """A fresh random serial for a session held in ``year``.

    Uniqueness is the caller's to ensure (the column is unique; a clash is
    a one-in-billions event, so draw again)."""
    if not 1000 <= year <= 9999:
        raise ValueError(f"year must have four digits, not {year!r}")
    year_digits = f"{year:04d}"
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    body = random_part + _check_symbol(year_digits, random_part)
    return f"{PREFIX}-{year_digits}-{body[:4]}-{body[4:]}"


def normalise(text: str) -> str | None:
    """The canonical serial a person meant by ``text``, or None.

    Accepts what people type or paste: any case, full-width characters (a
    Chinese input method), spaces or dashes anywhere or none, O for 0 and I
    or L for 1, with or without the ``TX`` prefix. Returns None if it cannot
    be a serial, or if its check character does not match.
    """
    if not isinstance(text, str) or len(text) > 100:
        return None
    text = unicodedata.normalize("NFKC", text).upper()
    # Drop separators: white space and every kind of dash.
    compact = "".join(
        c for c in text if not (c.isspace() or unicodedata.category(c) == "Pd" or c in "_.")
    )
    if compact.startswith(PREFIX):
        compact = compact[len(PREFIX) :]
    compact = compact.translate(_LOOK_ALIKES)
    if len(compact) != 4 + RANDOM_LENGTH + 1:
        return None
    year_digits, body = compact[:4], compact[4:]
    if not (year_digits.isascii() and year_digits.isdigit()):
        return None
    if any(c not in _VALUE for c in body):
        return None
    if _check_symbol(year_digits, body[:RANDOM_LENGTH]) != body[RANDOM_LENGTH]:
        return None
    return f"{PREFIX}-{year_digits}-{body[:4]}-{body[4:]}"


def is_valid(serial: str) -> bool:
    """True if ``serial`` is a canonical serial (exactly as printed) whose
    check character matches."""
    return (
        isinstance(serial, str)
        and bool(SERIAL_RE.fullmatch(serial))
        and normalise(serial) == serial
    )

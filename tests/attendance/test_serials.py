from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attendance import serials
from attendance.serials import ALPHABET, is_valid, new_serial, normalise

FORMAT = re.compile(r"TX-\d{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")

years = st.integers(min_value=1000, max_value=9999)
random_parts = st.text(alphabet=ALPHABET, min_size=7, max_size=7)


def _serial(year: int, random_part: str) -> str:
    """A valid serial with a chosen random part (new_serial's own assembly)."""
    body = random_part + serials._check_symbol(f"{year:04d}", random_part)
    return f"TX-{year:04d}-{body[:4]}-{body[4:]}"


# Positions of the characters a person could get wrong: year, random part,
# check character.
CHARACTER_POSITIONS = [3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16]


def _replacements(serial: str, position: int) -> list[str]:
    symbols = "0123456789" if position < 8 else ALPHABET
    return [
        serial[:position] + symbol + serial[position + 1 :]
        for symbol in symbols
        if symbol != serial[position]
    ]


def _adjacent_swaps(serial: str) -> list[str]:
    """Every swap of two neighbouring characters, across the dashes too
    (``7K4M-9QPX`` misread as ``7K49-MQPX``)."""
    characters = [serial[i] for i in CHARACTER_POSITIONS]
    swapped = []
    for i in range(len(characters) - 1):
        if characters[i] == characters[i + 1]:
            continue
        chars = characters.copy()
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
        text = list(serial)
        for position, char in zip(CHARACTER_POSITIONS, chars, strict=True):
            text[position] = char
        swapped.append("".join(text))
    return swapped


def test_new_serial_matches_the_format():
    serial = new_serial(2020)
    assert FORMAT.fullmatch(serial)
    assert serial.startswith("TX-2020-")
    assert serials.SERIAL_RE.fullmatch(serial)
    assert is_valid(serial)


def test_example_serial_is_valid():
    assert is_valid("TX-2020-7K4M-9QPX")
    assert not is_valid("TX-2020-7K4M-9QPD")


@given(years)
def test_new_serial_is_valid_for_any_year(year):
    serial = new_serial(year)
    assert serial[3:7] == f"{year:04d}"
    assert is_valid(serial)
    assert normalise(serial) == serial


@pytest.mark.parametrize("year", [999, 10000, -2020])
def test_new_serial_rejects_a_year_without_four_digits(year):
    with pytest.raises(ValueError):
        new_serial(year)


def test_new_serial_is_random_not_sequential():
    drawn = [new_serial(2024) for _ in range(1000)]
    assert len(set(drawn)) == 1000
    bodies = [s[8:].replace("-", "") for s in drawn]
    # A counter would leave serials drawn one after the other sharing all but
    # their last characters; random ones share their first three about once
    # in 32,768 draws.
    neighbours = sum(a[:3] == b[:3] for a, b in itertools.pairwise(bodies))
    assert neighbours <= 3
    # Every symbol turns up at every random position.
    for position in range(7):
        assert {body[position] for body in bodies} == set(ALPHABET)


@pytest.mark.parametrize(
    "serial",
    [
        "TX-2020-7K4M-9QPX",
        _serial(2020, "0000000"),
        _serial(2021, "ZZZZZZZ"),
        _serial(1999, "0Z0Z0Z0"),
        _serial(2031, "Z0Z0Z0Z"),
    ],
)
def test_every_single_substitution_is_detected(serial):
    assert is_valid(serial)
    for position in CHARACTER_POSITIONS:
        for wrong in _replacements(serial, position):
            assert not is_valid(wrong), wrong
            assert normalise(wrong) is None, wrong


@pytest.mark.parametrize(
    "serial",
    [
        "TX-2020-7K4M-9QPX",
        _serial(2020, "0Z0Z0Z0"),
        _serial(2090, "Z0Y1X2W"),
        _serial(2019, "0123456"),
    ],
)
def test_every_adjacent_transposition_is_detected(serial):
    swaps = _adjacent_swaps(serial)
    assert len(swaps) >= 10
    for wrong in swaps:
        assert not is_valid(wrong), wrong


def test_exhaustive_pairs_of_symbols_are_detected_when_swapped():
    """Every ordered pair of distinct symbols, swapped at every pair of
    neighbouring random positions: none slips through."""
    for a in ALPHABET:
        for b in ALPHABET:
            if a == b:
                continue
            for i in range(6):
                body = "7" * i + a + b + "7" * (5 - i)
                swapped = "7" * i + b + a + "7" * (5 - i)
                assert serials._check_symbol("2020", body) != serials._check_symbol(
                    "2020", swapped
                ), (a, b, i)


@given(years, random_parts, st.integers(0, 11), st.integers(1, 31))
def test_any_single_substitution_is_detected(year, random_part, index, shift):
    serial = _serial(year, random_part)
    position = CHARACTER_POSITIONS[index]
    symbols = "0123456789" if position < 8 else ALPHABET
    old = symbols.index(serial[position])
    new = symbols[(old + shift) % len(symbols)]
    if new == serial[position]:
        return
    wrong = serial[:position] + new + serial[position + 1 :]
    assert normalise(wrong) is None


@given(years, random_parts, st.integers(0, 10))
def test_any_adjacent_transposition_is_detected(year, random_part, index):
    serial = _serial(year, random_part)
    i, j = CHARACTER_POSITIONS[index], CHARACTER_POSITIONS[index + 1]
    if serial[i] == serial[j]:
        return
    text = list(serial)
    text[i], text[j] = text[j], text[i]
    assert normalise("".join(text)) is None


@given(years, random_parts)
def test_normalise_round_trips_lower_case_and_look_alikes(year, random_part):
    serial = _serial(year, random_part)
    typed = serial.lower().replace("0", "o").replace("1", "l")
    assert normalise(typed) == serial
    assert normalise(serial.replace("1", "I").replace("0", "O")) == serial
    assert normalise(serial.replace("-", "")) == serial
    assert normalise(serial.replace("-", " ")) == serial
    assert normalise(serial[3:]) == serial


@pytest.mark.parametrize(
    "typed",
    [
        "tx-2020-7k4m-9qpx",
        "TX 2020 7K4M 9QPX",
        "TX20207K4M9QPX",
        "  tx-2020-7k4m-9qpx\n",
        "20207K4M9QPX",
        "TX-2O2O-7K4M-9QPX",
        "ＴＸ－２０２０－７Ｋ４Ｍ－９ＱＰＸ",
        "TX–2020–7K4M–9QPX",
    ],
)
def test_normalise_accepts_what_people_type(typed):
    assert normalise(typed) == "TX-2020-7K4M-9QPX"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "TX",
        "TX-2020-7K4M-9QPD",  # wrong check character
        "TX-2020-7K4M-9QP",
        "TX-2020-7K4M-9QPXX",
        "TX-2020-7K4U-9QPX",  # U is not in the alphabet
        "TX-20A0-7K4M-9QPX",
        "TX-２０２０-7K4M-9QP!",
        "XX-2020-7K4M-9QPX",
        "x" * 1000,
    ],
)
def test_normalise_rejects_what_cannot_be_a_serial(typed):
    assert normalise(typed) is None


def test_is_valid_wants_the_canonical_form():
    assert is_valid("TX-2020-7K4M-9QPX")
    assert not is_valid("tx-2020-7k4m-9qpx")
    assert not is_valid("TX20207K4M9QPX")
    assert not is_valid("TX-2020-7K4M-9QPX\n")
    assert not is_valid("TX-2O2O-7K4M-9QPX")

"""Participation certificates as images: PNG and one-page A4 PDF (SPEC.md §7).

Everything is drawn with Pillow from fonts the project installs as Python
packages (``manimgx-fonts``: Noto Sans; ``manimgx-fonts-cjk``: Noto Sans CJK
SC), never a system font. Text is set in runs: each character takes the
first font of the stack that has it, so 张伟, O'Brien-Łukasz and 𠮷田太郎 all
print, and a character no font has is refused (``missing_characters``)
before a certificate is issued rather than printed as an empty box.

The page is A4 landscape at 300 dpi, printed in two inks on white paper: a
dark blue for the text and a red for the title and ornaments. It is drawn as
two grey layers (how much of each ink every pixel gets) and stored as a
palette image whose 256 colours are every mix of 16 levels of each ink. That
keeps anti-aliased text, and a palette PNG of this size saves several times
faster than an RGB one. The PDF embeds the same pixels as one JPEG page.

Everything that does not depend on the certificate (frame, title, labels)
is drawn once per process; each render copies it and adds the certificate's
own text and QR code. The output depends only on the certificate, so the
same certificate always gives the same bytes.
"""

from __future__ import annotations

import functools
import io
import math
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Literal

import segno
from fontTools.ttLib import TTFont
from PIL import Image, ImageChops, ImageDraw, ImageFont

if TYPE_CHECKING:
    from attendance.models import Certificate

__all__ = [
    "PAGE_SIZE",
    "UnprintableText",
    "missing_characters",
    "render_pdf",
    "render_png",
]

# Page geometry -----------------------------------------------------------------

DPI = 300
#: A4 landscape, 297 × 210 mm, in pixels at 300 dpi.
PAGE_SIZE = (3508, 2480)
_PX_PER_MM = DPI / 25.4
_PX_PER_PT = DPI / 72


def _mm(value: float) -> int:
    return round(value * _PX_PER_MM)


def _pt(value: float) -> int:
    return round(value * _PX_PER_PT)


WIDTH, HEIGHT = PAGE_SIZE
CENTRE_X = WIDTH // 2
#: Inside of the frame: nothing the certificate says is drawn beyond it.
INNER_MARGIN = _mm(13)
#: Where the name goes (left, top, right, bottom), in pixels.
NAME_BOX = (_mm(38), _mm(61), WIDTH - _mm(38), _mm(83))
ORGANISATION_BOX = (_mm(48), _mm(85.5), WIDTH - _mm(48), _mm(93.5))
SESSION_BOX = (_mm(32), _mm(105), WIDTH - _mm(32), _mm(125))
EVENT_BOX = (_mm(48), _mm(127), WIDTH - _mm(48), _mm(134))
#: The QR code's modules (without its quiet zone) are drawn in this square.
QR_BOX = (WIDTH - _mm(71), _mm(143), WIDTH - _mm(31), _mm(183))
#: A QR code smaller than this is hard to scan off a printout.
QR_MIN_SIZE = _mm(35)

# Inks (sRGB). White paper: the QR code needs the contrast.
PAPER = (255, 255, 255)
INK = (24, 39, 72)
ACCENT = (160, 27, 43)
_LEVELS = 16

# Fonts -------------------------------------------------------------------------

REGULAR = 400
BOLD = 700


@dataclass(frozen=True)
class _Face:
    package: str
    filename: str
    index: int


#: The font stack, in order of preference: Latin/Greek/Cyrillic first (its
#: Latin letters and digits are better than the CJK font's), then Chinese.
_STACK = (
    _Face("manimgx_fonts", "NotoSans[wght].ttf", 0),
    # Face 2 of the collection is Simplified Chinese (SC), whose glyph
    # shapes are the ones mainland readers expect.
    _Face("manimgx_fonts_cjk", "NotoSansCJK-VF.otf.ttc", 2),
)


class UnprintableText(ValueError):
    """Text has characters that no font of the stack can print."""

    def __init__(self, characters: list[str]) -> None:
        self.characters = characters
        names = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in characters)
        super().__init__(f"No certificate font has these characters: {names}")


def _path(face: _Face) -> str:
    return str(files(face.package) / face.filename)


@functools.cache
def _cmaps() -> tuple[frozenset[int], ...]:
    """The code points each font of the stack has a glyph for."""
    cmaps = []
    for face in _STACK:
        font = TTFont(_path(face), fontNumber=face.index, lazy=True)
        try:
            cmaps.append(frozenset(font.getBestCmap()))
        finally:
            font.close()
    return tuple(cmaps)


@functools.lru_cache(maxsize=512)
def _font(face: int, size: int, weight: int) -> ImageFont.FreeTypeFont:
    spec = _STACK[face]
    font = ImageFont.truetype(
        _path(spec), size, index=spec.index, layout_engine=ImageFont.Layout.BASIC
    )
    # Both are variable fonts; the CJK one defaults to its thinnest weight.
    font.set_variation_by_axes([weight])
    return font


def _ignorable(char: str) -> bool:
    """White space, control and invisible formatting characters (zero-width
    space, joiners, byte-order mark): never printed, never missing."""
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf")


def _clean(text: str) -> str:
    """The text as printed: composed (é, not e + ◌́), invisible characters
    dropped, white space collapsed to single spaces."""
    text = unicodedata.normalize("NFC", text)
    kept = "".join(c for c in text if c.isspace() or not _ignorable(c))
    return " ".join(kept.split())


def missing_characters(text: str) -> list[str]:
    """The characters of ``text`` that no certificate font has, each once,
    in order of first appearance (white space and invisible formatting
    characters are ignored)."""
    cmaps = _cmaps()
    missing: list[str] = []
    for char in _clean(text):
        if char == " " or char in missing:
            continue
        if not any(ord(char) in cmap for cmap in cmaps):
            missing.append(char)
    return missing


def _runs(text: str) -> list[tuple[int, str]]:
    """Split text into runs of one font each. Spaces join the run before."""
    cmaps = _cmaps()
    runs: list[tuple[int, str]] = []
    for char in text:
        if char == " " and runs:
            face = runs[-1][0]
        else:
            face = next((i for i, cmap in enumerate(cmaps) if ord(char) in cmap), -1)
            if face < 0:
                raise UnprintableText([char])
        if runs and runs[-1][0] == face:
            runs[-1] = (face, runs[-1][1] + char)
        else:
            runs.append((face, char))
    return runs


def _width(text: str, size: int, weight: int) -> float:
    return sum(_font(face, size, weight).getlength(run) for face, run in _runs(text))


# Text layout -------------------------------------------------------------------

# Ideographs, kana, hangul and full-width forms: a line may break between any
# two of them. Latin words break only at spaces.
_CJK = (
    "\u2e80-\u2fff\u3000-\u30ff\u3100-\u31ff\u3200-\u9fff\ua960-\ua97f\uac00-\ud7ff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff"
)
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+|\s+")
# Punctuation that never starts a line, and that never ends one.
_CLOSING = set("，。、；：！？）》」』】〉〕”’,.;:!?)]}…%")
_OPENING = set("（《「『【〈〔“‘([{")


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    glue_next = False
    for token in _TOKEN.findall(text):
        if tokens and (glue_next or token[0] in _CLOSING) and not token.isspace():
            tokens[-1] += token
        else:
            tokens.append(token)
        glue_next = not token.isspace() and token[-1] in _OPENING
    return tokens


def _wrap(text: str, size: int, weight: int, width: int) -> list[str]:
    """Greedy line breaking; a word wider than the line is cut anywhere."""
    lines: list[str] = []
    line = ""
    for token in _tokens(text):
        candidate = line + token
        if _width(candidate.strip(), size, weight) <= width:
            line = candidate
            continue
        if line.strip():
            lines.append(line.strip())
        line = token.lstrip()
        while line and _width(line, size, weight) > width:
            cut = len(line) - 1
            while cut > 1 and _width(line[:cut], size, weight) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.strip())
    return lines


def _ellipsise(line: str, size: int, weight: int, width: int) -> str:
    while line and _width(line + "…", size, weight) > width:
        line = line[:-1].rstrip()
    return line + "…"


@dataclass(frozen=True)
class _Block:
    lines: list[str]
    size: int
    weight: int
    #: Baseline to baseline, in pixels.
    pitch: int


def _fit(
    text: str,
    box: tuple[int, int, int, int],
    *,
    weight: int,
    max_size: int,
    min_size: int,
    max_lines: int = 1,
    leading: float = 1.25,
) -> _Block:
    """The largest font size (and fewest lines at that size) at which
    ``text`` fits in ``box``; at ``min_size``, whatever does not fit is cut
    short with an ellipsis."""
    width, height = box[2] - box[0], box[3] - box[1]
    size = max_size
    # Widths scale with the size: start near the largest size that can fit.
    natural = _width(text, max_size, weight)
    if natural > width * max_lines:
        size = max(min_size, math.floor(max_size * width * max_lines / natural))
    while True:
        pitch = round(size * leading)
        for count in range(1, max_lines + 1):
            if count > 1 and count * pitch > height:
                break
            lines = [text] if count == 1 else _wrap(text, size, weight, width)
            if len(lines) <= count and all(_width(x, size, weight) <= width for x in lines):
                return _Block(lines, size, weight, pitch)
        if size <= min_size:
            break
        size = max(min_size, size - max(1, size // 30))
    pitch = round(min_size * leading)
    count = max(1, min(max_lines, height // pitch))
    lines = _wrap(text, min_size, weight, width)
    if len(lines) > count:
        lines = [*lines[: count - 1], _ellipsise(lines[count - 1], min_size, weight, width)]
    return _Block(lines, min_size, weight, pitch)


def _draw_line(
    draw: ImageDraw.ImageDraw,
    x: float,
    baseline: float,
    text: str,
    *,
    size: int,
    weight: int,
    align: Literal["left", "centre", "right"] = "left",
    tracking: float = 0.0,
    fill: int = 0,
) -> float:
    """Draw one line of text, font by font on a common baseline. ``tracking``
    adds that many ems between characters. Returns the line's width."""
    spacing = tracking * size
    if spacing:
        pieces: list[tuple[int, str]] = [run for c in text for run in _runs(c)]
    else:
        pieces = _runs(text)
    advances = [_font(face, size, weight).getlength(piece) for face, piece in pieces]
    total = sum(advances) + spacing * max(0, len(pieces) - 1)
    if align == "centre":
        x -= total / 2
    elif align == "right":
        x -= total
    for (face, piece), advance in zip(pieces, advances, strict=True):
        draw.text((x, baseline), piece, font=_font(face, size, weight), fill=fill, anchor="ls")
        x += advance + spacing
    return total


def _draw_block(
    draw: ImageDraw.ImageDraw,
    block: _Block,
    box: tuple[int, int, int, int],
    *,
    bottom: bool = False,
    fill: int = 0,
) -> None:
    """Draw a fitted block centred in its box (or standing on its bottom
    edge). Glyphs of both scripts sit about 0.36 em above the baseline on
    average: that is what is centred."""
    height = len(block.lines) * block.pitch
    middle = box[3] - height / 2 if bottom else (box[1] + box[3]) / 2
    top = middle - height / 2
    for i, line in enumerate(block.lines):
        baseline = top + (i + 0.5) * block.pitch + 0.36 * block.size
        _draw_line(
            draw,
            (box[0] + box[2]) / 2,
            baseline,
            line,
            size=block.size,
            weight=block.weight,
            align="centre",
            fill=fill,
        )


# The blank certificate -----------------------------------------------------------

_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def _diamond(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: int) -> None:
    draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)


def _rosette(draw: ImageDraw.ImageDraw, cx: float, cy: float, fill: int) -> None:
    """A faint guilloché rosette behind the text, as on security paper."""
    steps = 1440
    for k in range(18):
        phase = k * math.pi / 9
        points = []
        for i in range(steps + 1):
            t = 2 * math.pi * i / steps
            r = _mm(46) + _mm(9) * math.sin(7 * t + phase) + _mm(4) * math.sin(19 * t - phase)
            points.append((cx + r * math.cos(t) * 1.75, cy + r * math.sin(t)))
        draw.line(points, fill=fill, width=3, joint="curve")


def _frame(ink: ImageDraw.ImageDraw, accent: ImageDraw.ImageDraw) -> None:
    outer, inner = _mm(8), _mm(11.5)
    accent.rectangle((outer, outer, WIDTH - outer, HEIGHT - outer), outline=0, width=_mm(1.3))
    ink.rectangle((inner, inner, WIDTH - inner, HEIGHT - inner), outline=0, width=_mm(0.3))
    # Corner ornaments: an open diamond on each corner of the outer frame.
    for x in (outer, WIDTH - outer):
        for y in (outer, HEIGHT - outer):
            _diamond(accent, x, y, _mm(3.2), 0)
            _diamond(accent, x, y, _mm(1.6), 255)


def _ornamental_rule(draw: ImageDraw.ImageDraw, y: int, half: int) -> None:
    gap = _mm(4)
    draw.line([(CENTRE_X - half, y), (CENTRE_X - gap, y)], fill=0, width=_mm(0.35))
    draw.line([(CENTRE_X + gap, y), (CENTRE_X + half, y)], fill=0, width=_mm(0.35))
    _diamond(draw, CENTRE_X, y, _mm(1.8), 0)
    for side in (-1, 1):
        _diamond(draw, CENTRE_X + side * _mm(3.4), y, _mm(0.8), 0)


# Bottom row: details on the left, issuer in the middle, QR code on the right.
_DETAILS_X = _mm(26)
_DETAILS_WIDTH = _mm(88)
_DETAIL_ROWS = (_mm(150), _mm(164), _mm(178))
_ISSUER_BOX = (CENTRE_X - _mm(44), _mm(163), CENTRE_X + _mm(44), _mm(176))
_ISSUER_RULE_Y = _mm(179.5)


@functools.cache
def _template() -> tuple[Image.Image, Image.Image]:
    """The blank certificate: its ink layer (0 = full ink, 255 = paper) and
    its accent layer already reduced to palette levels.

    Labels are in Chinese and English on every certificate, whatever the
    language of the page it was downloaded from, so they are not translated.
    """
    ink_layer = Image.new("L", PAGE_SIZE, 255)
    accent_layer = Image.new("L", PAGE_SIZE, 255)
    ink = ImageDraw.Draw(ink_layer)
    accent = ImageDraw.Draw(accent_layer)

    _rosette(accent, CENTRE_X, _mm(96), 238)
    _frame(ink, accent)

    _draw_line(
        accent,
        CENTRE_X,
        _mm(33),
        "参会证明",
        size=_pt(40),
        weight=BOLD,
        align="centre",
        tracking=0.5,
    )
    _draw_line(
        ink,
        CENTRE_X,
        _mm(42.5),
        "CERTIFICATE OF PARTICIPATION",
        size=_pt(13),
        weight=REGULAR,
        align="centre",
        tracking=0.32,
    )
    _ornamental_rule(accent, _mm(49), _mm(45))
    _draw_line(
        ink,
        CENTRE_X,
        _mm(58),
        "兹证明  /  This is to certify that",
        size=_pt(12),
        weight=REGULAR,
        align="centre",
    )
    accent.line(
        [(CENTRE_X - _mm(80), NAME_BOX[3]), (CENTRE_X + _mm(80), NAME_BOX[3])],
        fill=0,
        width=_mm(0.3),
    )
    _draw_line(
        ink,
        CENTRE_X,
        _mm(101),
        "参加了以下在线研讨会  /  has attended the online session",
        size=_pt(12),
        weight=REGULAR,
        align="centre",
    )

    labels = ("日期 / Date", "参会时长 / Time attended", "证书编号 / Serial No.")
    for label, y in zip(labels, _DETAIL_ROWS, strict=True):
        _draw_line(accent, _DETAILS_X, y, label, size=_pt(9), weight=REGULAR)
    ink.line(
        [(_ISSUER_BOX[0], _ISSUER_RULE_Y), (_ISSUER_BOX[2], _ISSUER_RULE_Y)],
        fill=0,
        width=_mm(0.25),
    )
    _draw_line(
        accent,
        (_ISSUER_BOX[0] + _ISSUER_BOX[2]) / 2,
        _ISSUER_RULE_Y + _mm(5.5),
        "颁发单位 / Issued by",
        size=_pt(9),
        weight=REGULAR,
        align="centre",
    )
    _draw_line(
        accent,
        (QR_BOX[0] + QR_BOX[2]) / 2,
        QR_BOX[3] + _mm(5.5),
        "扫码验证  /  Scan to verify",
        size=_pt(9),
        weight=REGULAR,
        align="centre",
    )

    return ink_layer, accent_layer.point(_ACCENT_LEVEL)


# Palette: index = 16 × ink level + accent level (level 15 = no ink). Each
# colour is the paper filtered through both inks, as overprinted inks mix.
_INK_LEVEL = [round(v * (_LEVELS - 1) / 255) * _LEVELS for v in range(256)]
_ACCENT_LEVEL = [round(v * (_LEVELS - 1) / 255) for v in range(256)]


def _palette() -> list[int]:
    palette = []
    for index in range(_LEVELS * _LEVELS):
        ink_cover = 1 - (index // _LEVELS) / (_LEVELS - 1)
        accent_cover = 1 - (index % _LEVELS) / (_LEVELS - 1)
        for paper, ink, accent in zip(PAPER, INK, ACCENT, strict=True):
            ink_filter = 1 - ink_cover * (1 - ink / 255)
            accent_filter = 1 - accent_cover * (1 - accent / 255)
            palette.append(round(paper * ink_filter * accent_filter))
    return palette


_PALETTE = _palette()


# One certificate ---------------------------------------------------------------


def _long_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日  /  {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _duration(minutes: int) -> str:
    unit = "minute" if minutes == 1 else "minutes"
    return f"{minutes} 分钟  /  {minutes} {unit}"


def _quoted(title: str) -> str:
    """Chinese book-title marks around a title with Chinese in it, English
    quotation marks otherwise."""
    if re.search(f"[{_CJK}]", title):
        return f"《{title}》"
    return f"\u201c{title}\u201d"


def _qr_modules(url: str) -> Iterator[bytes]:
    # Error correction Q: a quarter of the symbol can be smudged or folded.
    qr = segno.make_qr(url, error="q", boost_error=False)
    for row in qr.matrix_iter(scale=1, border=0):
        yield bytes(0 if dark else 255 for dark in row)


def _draw_qr(layer: Image.Image, url: str) -> None:
    rows = list(_qr_modules(url))
    modules = len(rows)
    box = QR_BOX[2] - QR_BOX[0]
    scale = max(box // modules, math.ceil(QR_MIN_SIZE / modules))
    symbol = Image.frombytes("L", (modules, modules), b"".join(rows))
    symbol = symbol.resize((modules * scale, modules * scale), Image.Resampling.NEAREST)
    x = (QR_BOX[0] + QR_BOX[2] - symbol.width) // 2
    y = QR_BOX[1] + (box - symbol.height) // 2
    # Clear the quiet zone (four modules) of the rosette and anything else.
    quiet = 4 * scale
    layer.paste(255, (x - quiet, y - quiet, x + symbol.width + quiet, y + symbol.height + quiet))
    layer.paste(symbol, (x, y))


def _fields(certificate: Certificate) -> dict[str, str]:
    return {
        "name": _clean(certificate.name),
        "organisation": _clean(certificate.organisation),
        "session_title": _clean(certificate.session_title),
        "event_title": _clean(certificate.event_title),
        "issuer": _clean(certificate.issuer),
        "serial": _clean(certificate.serial),
        "url": _clean(certificate.verification_url()),
    }


def _draw(certificate: Certificate) -> Image.Image:
    fields = _fields(certificate)
    missing = missing_characters("".join(fields.values()))
    if missing:
        raise UnprintableText(missing)

    template_ink, accent_levels = _template()
    layer = template_ink.copy()
    ink = ImageDraw.Draw(layer)

    # Long texts shrink, then wrap; only absurdly long ones are cut short.
    name = _fit(
        fields["name"],
        NAME_BOX,
        weight=BOLD,
        max_size=_pt(40),
        min_size=_pt(8),
        max_lines=3,
        leading=1.15,
    )
    _draw_block(ink, name, NAME_BOX)
    if fields["organisation"]:
        organisation = _fit(
            fields["organisation"],
            ORGANISATION_BOX,
            weight=REGULAR,
            max_size=_pt(15),
            min_size=_pt(6),
            max_lines=2,
            leading=1.15,
        )
        _draw_block(ink, organisation, ORGANISATION_BOX)
    session = _fit(
        _quoted(fields["session_title"]),
        SESSION_BOX,
        weight=BOLD,
        max_size=_pt(19),
        min_size=_pt(6),
        max_lines=3,
        leading=1.3,
    )
    _draw_block(ink, session, SESSION_BOX)
    event = _fit(
        fields["event_title"],
        EVENT_BOX,
        weight=REGULAR,
        max_size=_pt(13),
        min_size=_pt(6),
        max_lines=2,
        leading=1.15,
    )
    _draw_block(ink, event, EVENT_BOX)

    values = (_long_date(certificate.held_on), _duration(certificate.minutes), fields["serial"])
    for value, y in zip(values, _DETAIL_ROWS, strict=True):
        box = (_DETAILS_X, y + _mm(1.5), _DETAILS_X + _DETAILS_WIDTH, y + _mm(8.5))
        # The serial is what people type in: it stands out.
        weight = BOLD if value == fields["serial"] else REGULAR
        block = _fit(value, box, weight=weight, max_size=_pt(12), min_size=_pt(6))
        _draw_line(ink, _DETAILS_X, y + _mm(7), block.lines[0], size=block.size, weight=weight)

    issuer = _fit(
        fields["issuer"],
        _ISSUER_BOX,
        weight=BOLD,
        max_size=_pt(14),
        min_size=_pt(6),
        max_lines=3,
        leading=1.2,
    )
    _draw_block(ink, issuer, _ISSUER_BOX, bottom=True)

    _draw_qr(layer, fields["url"])
    url_box = (QR_BOX[0] - _mm(14), 0, QR_BOX[2] + _mm(14), 0)
    url = _fit(fields["url"], url_box, weight=REGULAR, max_size=_pt(6.5), min_size=_pt(4))
    _draw_line(
        ink,
        (QR_BOX[0] + QR_BOX[2]) / 2,
        QR_BOX[3] + _mm(10),
        url.lines[0],
        size=url.size,
        weight=REGULAR,
        align="centre",
    )

    page = ImageChops.add(layer.point(_INK_LEVEL), accent_levels)
    page.putpalette(_PALETTE)
    return page


def render_png(certificate: Certificate) -> bytes:
    """The certificate as a 300 dpi A4 landscape PNG (palette image)."""
    buffer = io.BytesIO()
    _draw(certificate).save(buffer, "PNG", dpi=(DPI, DPI), compress_level=3)
    return buffer.getvalue()


def _timestamp(certificate: Certificate) -> time.struct_time:
    """When the certificate was issued (UTC), for the PDF's dates; an
    unsaved one uses the day the session was held."""
    moment = certificate.issued_at
    if isinstance(moment, datetime):
        return time.gmtime(moment.timestamp())
    return certificate.held_on.timetuple()


def render_pdf(certificate: Certificate) -> bytes:
    """The certificate as a one-page A4 landscape PDF (the same pixels as
    the PNG, as one 300 dpi image)."""
    page = _draw(certificate).convert("RGB")
    stamp = _timestamp(certificate)
    buffer = io.BytesIO()
    page.save(
        buffer,
        "PDF",
        resolution=DPI,
        # Full-resolution colour (no chroma subsampling) keeps red and blue
        # text edges sharp.
        quality=90,
        subsampling=0,
        title=f"参会证明 / Certificate of Participation {certificate.serial}",
        author=certificate.issuer,
        subject=certificate.session_title,
        creator="Tongxin",
        creationDate=stamp,
        modDate=stamp,
    )
    return buffer.getvalue()

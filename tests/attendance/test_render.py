from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
import zxingcpp
from fontTools.ttLib import TTFont
from PIL import Image
from pypdf import PdfReader

from attendance import render
from attendance.models import Certificate
from attendance.render import UnprintableText, missing_characters, render_pdf, render_png

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SITE_URL = "https://tongxin.example.org"
A4_LANDSCAPE_PT = (841.89, 595.28)
PX_PER_MM = 300 / 25.4

LONG_NAME = (
    "Maximilian Alexander Konstantin Wolfgang Sebastian von Hohenzollern-Sigmaringen "
    "und Lichtenstein-Ostrowski-Wiśniewska de la Cruz"
)
HIEROGLYPH = "\U00013000"
EMOJI = "\U0001f600"


@pytest.fixture(autouse=True)
def _site_url(settings):
    settings.SITE_URL = SITE_URL


def make_certificate(**fields) -> Certificate:
    """An unsaved certificate: rendering needs no database."""
    defaults = {
        "serial": "TX-2020-7K4M-9QPX",
        "name": "张伟",
        "organisation": "嘉禾认证中心 审核部",
        "session_title": "第一场：复工复产形势下的认证认可服务",
        "event_title": "同心协力，主动作为 · 系列直播论坛",
        "issuer": "中国认证认可协会",
        "held_on": date(2020, 3, 2),
        "minutes": 95,
    }
    defaults.update(fields)
    return Certificate(**defaults)


def _image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def _ink_box(
    image: Image.Image, box: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    """Bounding box (page coordinates) of the dark pixels inside ``box``: the
    faint background pattern is lighter than the threshold."""
    region = image.convert("L").crop(box).point(lambda v: 255 if v < 128 else 0)
    found = region.getbbox()
    if found is None:
        return None
    return (box[0] + found[0], box[1] + found[1], box[0] + found[2], box[1] + found[3])


def _name_band() -> tuple[int, int, int, int]:
    """The name's band across the page, inside the frame, above the rule
    the name stands on."""
    margin = render.INNER_MARGIN
    return (margin, render.NAME_BOX[1], render.WIDTH - margin, render.NAME_BOX[3] - 10)


# QR code ---------------------------------------------------------------------


def test_png_qr_code_decodes_to_the_verification_url():
    certificate = make_certificate()
    image = _image(render_png(certificate))

    results = zxingcpp.read_barcodes(image.convert("L"))

    assert [(r.format, r.text) for r in results] == [
        (zxingcpp.BarcodeFormat.QRCode, f"{SITE_URL}/certificates/TX-2020-7K4M-9QPX/")
    ]
    assert results[0].text == certificate.verification_url()


def test_qr_code_is_large_enough_to_scan_from_a_printout():
    image = _image(render_png(make_certificate()))

    (result,) = zxingcpp.read_barcodes(image.convert("L"))

    position = result.position
    # The corners are the centres of the corner modules: at least 35 mm
    # apart even before counting the modules' own width.
    assert (position.top_right.x - position.top_left.x) / PX_PER_MM >= 35
    assert (position.bottom_left.y - position.top_left.y) / PX_PER_MM >= 35


def test_qr_code_still_decodes_at_screen_resolution():
    image = _image(render_png(make_certificate())).convert("L")
    small = image.resize((image.width // 4, image.height // 4), Image.Resampling.BOX)

    assert [r.text for r in zxingcpp.read_barcodes(small)] == [
        f"{SITE_URL}/certificates/TX-2020-7K4M-9QPX/"
    ]


def test_pdf_qr_code_decodes_to_the_verification_url():
    page = PdfReader(io.BytesIO(render_pdf(make_certificate()))).pages[0]
    (embedded,) = page.images

    results = zxingcpp.read_barcodes(embedded.image.convert("L"))

    assert [r.text for r in results] == [f"{SITE_URL}/certificates/TX-2020-7K4M-9QPX/"]


# Page ------------------------------------------------------------------------


def test_png_is_a4_landscape_at_300_dpi():
    image = _image(render_png(make_certificate()))

    assert image.format == "PNG"
    assert image.size == (3508, 2480)
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_pdf_is_one_a4_landscape_page():
    reader = PdfReader(io.BytesIO(render_pdf(make_certificate())))

    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert float(box.width) == pytest.approx(A4_LANDSCAPE_PT[0], abs=1)
    assert float(box.height) == pytest.approx(A4_LANDSCAPE_PT[1], abs=1)
    (embedded,) = reader.pages[0].images
    assert embedded.image.size == (3508, 2480)
    assert reader.metadata is not None
    assert "TX-2020-7K4M-9QPX" in reader.metadata.title


# Determinism -------------------------------------------------------------------


def test_same_certificate_renders_to_the_same_bytes():
    first, second = make_certificate(), make_certificate()

    assert render_png(first) == render_png(second)
    assert render_pdf(first) == render_pdf(second)


def test_a_different_serial_gives_a_different_image():
    one = _image(render_png(make_certificate(serial="TX-2020-7K4M-9QPX")))
    other = _image(render_png(make_certificate(serial="TX-2020-WP3Y-DZ6T")))

    assert one.tobytes() != other.tobytes()
    assert [r.text for r in zxingcpp.read_barcodes(other.convert("L"))] == [
        f"{SITE_URL}/certificates/TX-2020-WP3Y-DZ6T/"
    ]
    # The serial printed in the details changed too, not only the QR code.
    details = (render._DETAILS_X, render._DETAIL_ROWS[2], render.WIDTH // 3, render.HEIGHT - 200)
    assert one.crop(details).tobytes() != other.crop(details).tobytes()


# Names and scripts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "name"),
    [("zhang-wei", "张伟"), ("obrien-lukasz", "O'Brien-Łukasz")],
)
def test_names_render_and_are_kept_for_review(slug, name):
    certificate = make_certificate(name=name)
    png = render_png(certificate)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"certificate-{slug}.png").write_bytes(png)
    (ARTIFACTS / f"certificate-{slug}.pdf").write_bytes(render_pdf(certificate))

    ink = _ink_box(_image(png), _name_band())

    assert ink is not None
    # A short name is centred on the page.
    centre = (ink[0] + ink[2]) / 2
    assert centre == pytest.approx(render.WIDTH / 2, abs=20)


@pytest.mark.parametrize(
    "name",
    ["张伟", "O'Brien-Łukasz", "𠮷田太郎", "Ólafur Þór Ævarsson", "Дмитрий Шостакович", LONG_NAME],
)
def test_names_in_any_supported_script_render(name):
    image = _image(render_png(make_certificate(name=name)))

    assert _ink_box(image, _name_band()) is not None
    assert render_pdf(make_certificate(name=name)).startswith(b"%PDF-")


@pytest.mark.parametrize("name", [LONG_NAME, "张" * 200, "W" * 200])
def test_long_name_stays_inside_its_box_and_the_margins(name):
    image = _image(render_png(make_certificate(name=name)))

    ink = _ink_box(image, _name_band())

    assert ink is not None
    left, top, right, bottom = render.NAME_BOX
    assert left <= ink[0] and ink[2] <= right
    assert top <= ink[1] and ink[3] <= bottom
    # And it still fills most of the width: it shrank, it did not vanish.
    assert ink[2] - ink[0] > (right - left) * 0.6


def test_name_changes_the_name_band_only_where_expected():
    one = _image(render_png(make_certificate(name="张伟")))
    other = _image(render_png(make_certificate(name="李娜")))

    band = _name_band()
    assert one.crop(band).tobytes() != other.crop(band).tobytes()
    title = (0, 0, render.WIDTH, render.NAME_BOX[1] - 20)
    assert one.crop(title).tobytes() == other.crop(title).tobytes()


# Characters no font has ------------------------------------------------------------


def test_stack_fonts_really_lack_the_test_characters():
    """The characters below are missing from both fonts (checked with
    fontTools, independently of the renderer's own lookup)."""
    cmaps = []
    for face in render._STACK:
        font = TTFont(render._path(face), fontNumber=face.index, lazy=True)
        cmaps.append(font.getBestCmap())
        font.close()
    latin, cjk = cmaps
    assert ord("Ł") in latin and ord("Ł") not in cjk
    assert 0x20BB7 in cjk and 0x20BB7 not in latin
    for char in (HIEROGLYPH, EMOJI):
        assert ord(char) not in latin and ord(char) not in cjk


@pytest.mark.parametrize(
    "text", ["张伟", "O'Brien-Łukasz", "𠮷", "𠮷田太郎", "  张 伟\t\n", "A\u200bB"]
)
def test_missing_characters_is_empty_for_printable_text(text):
    assert missing_characters(text) == []


def test_missing_characters_names_each_missing_character_once_in_order():
    text = f"张伟{HIEROGLYPH} O'Brien {EMOJI}{HIEROGLYPH}"

    assert missing_characters(text) == [HIEROGLYPH, EMOJI]


@pytest.mark.parametrize(
    "field", ["name", "organisation", "session_title", "event_title", "issuer"]
)
def test_render_refuses_text_no_font_can_print(field):
    certificate = make_certificate(**{field: f"张伟 {HIEROGLYPH}"})

    with pytest.raises(UnprintableText) as caught:
        render_png(certificate)

    assert caught.value.characters == [HIEROGLYPH]
    assert "U+13000" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(UnprintableText):
        render_pdf(certificate)


# Content ----------------------------------------------------------------------


def test_date_and_duration_are_bilingual():
    assert render._long_date(date(2020, 3, 2)) == "2020年3月2日  /  2 March 2020"
    assert render._duration(95) == "95 分钟  /  95 minutes"
    assert render._duration(1) == "1 分钟  /  1 minute"


def test_session_title_marks_follow_its_language():
    assert render._quoted("复工复产") == "《复工复产》"
    assert render._quoted("Remote audits") == "\u201cRemote audits\u201d"


def test_long_session_title_wraps_without_overflowing():
    title = "Remote audit evidence and sampling in certification: " * 6
    block = render._fit(
        render._quoted(title),
        render.SESSION_BOX,
        weight=render.BOLD,
        max_size=80,
        min_size=25,
        max_lines=3,
    )
    width = render.SESSION_BOX[2] - render.SESSION_BOX[0]

    assert 2 <= len(block.lines) <= 3
    assert all(render._width(line, block.size, render.BOLD) <= width for line in block.lines)
    assert "".join(block.lines).replace(" ", "") == render._quoted(title).replace(" ", "")

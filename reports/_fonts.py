"""The fonts a printed report carries: the system's CJK sans-serif, cut to the characters the
document uses and given TrueType outlines, embedded in the HTML as ``@font-face`` data.

Why: Chromium's PDF printer (Skia) embeds a TrueType-outline font as a CID TrueType font, but
draws a CFF-outline OpenType font (Noto Sans CJK, Source Han Sans: the CJK fonts Linux
ships) and any synthesised bold as Type 3 glyph procedures, which archives and some
regulators' PDF checkers refuse and which copy and search badly. Converting the CFF outlines
to quadratic TrueType ones (fontTools, already installed with matplotlib) for a regular and
a bold face, each subset to the document's characters (a few hundred CJK glyphs, a few
hundred KB), gives a PDF whose every font is CID TrueType, whatever the printing machine
has installed, and the same glyphs on every machine. Noto CJK and Source Han Sans are under
the SIL Open Font License, which allows embedding subsets.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["FONT_FAMILY", "FontMissingError", "embedded_font_css", "find_cjk_font"]

FONT_FAMILY = "CW Report Sans"
"""The family name the embedded faces get in the report's CSS."""

_FACES = {  # weight -> (family names to look for, in order of preference)
    400: ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Micro Hei",
          "Droid Sans Fallback"),
    700: ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Micro Hei",
          "Droid Sans Fallback"),
}
_ALWAYS = "".join(chr(c) for c in range(0x20, 0x7F)) + "—–·×≤≥…“”‘’、，。：；（）％／"
"""Printable ASCII and common punctuation, kept in every subset (page footers, numbers)."""


class FontMissingError(RuntimeError):
    """No CJK font on the machine to embed; the message says how to get one."""


@dataclass(frozen=True)
class _Face:
    path: Path
    index: int  # the font's number inside a .ttc collection, 0 for a single font


def _family_names(font) -> set[str]:
    name = font["name"]
    return {str(n.toUnicode()) for n in name.names if n.nameID in (1, 16)}


@lru_cache(maxsize=4)
def find_cjk_font(weight: int) -> _Face:
    """The first installed face of `_FACES` of ``weight`` (400 or 700), via fontconfig's
    list as matplotlib reads it; raises `FontMissingError` when none is installed."""
    from fontTools.ttLib import TTCollection, TTFont
    from matplotlib import font_manager

    wanted = _FACES[weight]
    candidates: dict[str, list[_Face]] = {family: [] for family in wanted}
    for file in sorted(set(font_manager.findSystemFonts())):
        path = Path(file)
        if path.suffix.lower() not in (".ttc", ".otf", ".ttf"):
            continue
        try:
            fonts = (TTCollection(str(path), lazy=True).fonts if path.suffix.lower() == ".ttc"
                     else [TTFont(str(path), lazy=True)])
        except Exception:
            continue
        for index, font in enumerate(fonts):
            names = _family_names(font)
            bold = bool(font["OS/2"].usWeightClass >= 600) if "OS/2" in font else False
            for family in wanted:
                if family in names and bold == (weight >= 600):
                    candidates[family].append(_Face(path, index))
    for family in wanted:
        if candidates[family]:
            return candidates[family][0]
    raise FontMissingError(
        f"the printed report embeds a CJK font and none of {', '.join(wanted)} "
        f"(weight {weight}) is installed: install one (Debian: apt-get install fonts-noto-cjk)")


def _truetype_subset(face: _Face, text: str) -> bytes:
    """``face`` cut to the glyphs of ``text``, with its outlines as TrueType ``glyf``."""
    from fontTools import subset
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont, newTable

    font = TTFont(str(face.path), fontNumber=face.index)
    options = subset.Options()
    options.layout_features = ["kern", "liga", "ccmp", "locl", "halt", "palt"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text + _ALWAYS)
    subsetter.subset(font)
    if "glyf" not in font:  # CFF outlines: draw each glyph again as quadratic curves
        order = font.getGlyphOrder()
        glyphs = font.getGlyphSet()
        glyf = newTable("glyf")
        glyf.glyphOrder = order
        glyf.glyphs = {}
        for name in order:
            pen = TTGlyphPen(glyphs)
            glyphs[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
            glyf[name] = pen.glyph()
        font["glyf"] = glyf
        font["loca"] = newTable("loca")
        for table in ("CFF ", "CFF2", "VORG"):
            if table in font:
                del font[table]
        maxp = font["maxp"]
        maxp.tableVersion = 0x00010000
        for attr in ("maxPoints", "maxContours", "maxCompositePoints", "maxCompositeContours",
                     "maxTwilightPoints", "maxStorage", "maxFunctionDefs",
                     "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions",
                     "maxComponentElements", "maxComponentDepth"):
            setattr(maxp, attr, 0)
        maxp.maxZones = 1
        font["head"].glyphDataFormat = 0
        post = font["post"]
        post.formatType = 2.0
        post.extraNames = []
        post.mapping = {}
        post.glyphOrder = order
        font.sfntVersion = "\x00\x01\x00\x00"
    out = io.BytesIO()
    font.save(out)  # recomputes maxp and the bounding boxes from the new glyf
    return out.getvalue()


def embedded_font_css(text: str) -> str:
    """``@font-face`` rules for a regular and a bold face of `FONT_FAMILY` holding every
    character of ``text`` (the document's visible text, plots and footers included)."""
    chars = "".join(sorted(set(text)))
    rules = []
    for weight in (400, 700):
        data = base64.b64encode(_truetype_subset(find_cjk_font(weight), chars)).decode("ascii")
        rules.append(f'@font-face {{ font-family: "{FONT_FAMILY}"; font-weight: {weight}; '
                     f'font-style: normal; src: url(data:font/ttf;base64,{data}) '
                     f'format("truetype"); }}')
    return "\n".join(rules)

"""Characters that stand in for others: line breaks, dashes, dots and Latin look-alikes.

Used by normalize.py, for detection only: the text itself is never rewritten.
"""

from __future__ import annotations

import re
import unicodedata

LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
BLANKS = frozenset("\u2800")  # braille blank: shows as a space, is a symbol

# Besides Unicode's dash punctuation (Pd): minus signs, bullets and rules drawn as a
# dash, the long-vowel mark and the Hangul vowel ㅡ, both typed for a dash.
DASHES = frozenset(
    "\u2212\u2796\u02d7\u2043\u23af\u2500\u2501\u2574\u2576\u2578\u257a\u257c\u257e"
    "\u30fc\u3161\uff70\uffda"
)
# Middle dots and full stops of other scripts, as separators of number groups.
DOTS = frozenset("\u00b7\u0387\u2027\u2219\u22c5\u30fb\u3002\u2e31\u2e33\u318d\u16eb\ua78f")

# Hidden in text as nothing at all (Unicode's default-ignorable code points that are
# neither format characters nor marks): the Hangul fillers, and reserved ranges.
_IGNORABLE = frozenset("\u115f\u1160\u3164\uffa0\u2065")
_IGNORABLE_RANGES = ((0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF))


def ignorable(char: str) -> bool:
    code = ord(char)
    return char in _IGNORABLE or any(low <= code <= high for low, high in _IGNORABLE_RANGES)


# Letters of other scripts drawn like Latin ones (after NFKD, which already folds
# full-width, mathematical, circled and squared letters).
_PAIRS = (
    # Cyrillic
    "АA ВB СC ЕE НH ІI ЈJ КK МM ОO РP ЅS ТT ХX УY ҮY ӀI ԚQ ԜW"
    " аa сc еe һh іi јj оo рp ѕs хx уy ԁd ԛq ԝw ӏl"
    # Greek
    " ΑA ΒB ΕE ΖZ ΗH ΙI ΚK ΜM ΝN ΟO ΡP ΤT ΥY ΧX οo ιi κk νv ρp υu"
    # Armenian and Cherokee
    " ՕO ՍU օo սu հh ոn ᎪA ᏴB ᏟC ᎬE ᎻH ᎫJ ᏦK ᎷM ᏢP ᏚS ᎢT ᏙV ᎳW ᏃZ"
    # Latin letters that are not ASCII: dotless i and j, small capitals, clicks
    " ıi ȷj ɑa ɡg ɩi ǀI ᴀA ʙB ᴄC ᴅD ᴇE ɢG ʜH ɪI ᴊJ ᴋK ʟL ᴍM ɴN ᴏO ᴘP ʀR ꜱS ᴛT ᴜU ᴠV ᴡW ʏY ᴢZ"
)
CONFUSABLES: dict[str, str] = {pair[0]: pair[1] for pair in _PAIRS.split()}
CONFUSABLES.update({"ǁ": "II", "‖": "II"})  # drawn as the Roman numeral Ⅱ

# Enclosed letters NFKD leaves alone: negative circled and squared, regional indicators.
_ENCLOSED = re.compile(r"(?:NEGATIVE (?:CIRCLED|SQUARED)|REGIONAL INDICATOR) .*LETTER ([A-Z])$")
for _code in range(0x1F150, 0x1F200):
    _named = _ENCLOSED.match(unicodedata.name(chr(_code), ""))
    if _named:
        CONFUSABLES[chr(_code)] = _named.group(1)

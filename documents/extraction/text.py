"""Bytes to text: the encoding is detected (BOM, UTF-16 shape, UTF-8, then charset-normalizer),
never assumed, and text that is really binary is refused."""

from __future__ import annotations

import codecs
import re

from documents.extraction.errors import ExtractionError

_BOMS = [
    # UTF-32 LE's BOM begins with UTF-16 LE's, so it is tried first.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
# C0 controls other than tab, newline, vertical tab, form feed and carriage return, plus DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_CARRIAGE_RETURNS = re.compile(r"\r\n?")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# The encodings office files really come in. Left to itself, charset-normalizer also weighs
# EBCDIC, HP Roman-8, Mac code pages and the like, which "fit" short Western texts (or random
# high bytes) better than the cp1252 they almost always are.
_CANDIDATE_ENCODINGS = [
    "cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "cp1251", "koi8_r", "koi8_u",
    "iso8859_5", "cp1253", "iso8859_7", "cp1254", "iso8859_9", "cp1255", "iso8859_8", "cp1256",
    "cp1257", "iso8859_13", "cp1258", "cp874", "shift_jis", "cp932", "euc_jp", "iso2022_jp",
    "gb18030", "gb2312", "gbk", "big5", "euc_kr", "cp949",
]  # fmt: skip
# Candidates this close to the least chaotic are compared on language coherence.
_CHAOS_SLACK = 0.15
# On a tie, the commonest code pages of office files win.
_PREFERRED = {"cp1252": 2, "cp1250": 1}
# Share of control characters above which decoded "text" is binary data in disguise.
MAX_CONTROL_RATIO = 0.01


def clean_text(text: str) -> str:
    """What every extractor returns: no NULs (PostgreSQL refuses them), `\\n` line ends, no lone
    surrogates (they cannot be encoded to UTF-8)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "\r" in text:
        text = _CARRIAGE_RETURNS.sub("\n", text)
    if _SURROGATES.search(text):
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _utf16_without_bom(sample: bytes) -> str | None:
    """UTF-16 text without a BOM shows NULs in every other byte (for Latin scripts)."""
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nuls, odd_nuls = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_nuls > 0.4 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.4 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def decode_text(data: bytes) -> tuple[str, str]:
    """Return (text, encoding) or raise ExtractionError saying why the bytes are not text."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding.removesuffix("-sig")
            except UnicodeDecodeError:
                raise ExtractionError(
                    f"undecodable text: it starts with a {encoding.removesuffix('-sig').upper()}"
                    " byte-order mark but is not valid in that encoding"
                ) from None
    utf16 = _utf16_without_bom(data[:4096])
    if utf16:
        try:
            return data.decode(utf16), utf16
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:8192]:
        raise ExtractionError(
            "unsupported type: binary data (not text, PDF or DOCX), whatever its name says"
        )
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # only for text that is not UTF-8: loaded lazily

    matches = from_bytes(data, cp_isolation=_CANDIDATE_ENCODINGS)
    best = matches.best()
    if best is None:
        raise ExtractionError("undecodable text: not UTF-8, and no known encoding fits its bytes")
    close = [m for m in matches if m.chaos <= best.chaos + _CHAOS_SLACK]
    encoding = max(
        close, key=lambda m: (round(m.coherence, 2), _PREFERRED.get(m.encoding, 0), -m.chaos)
    ).encoding
    try:
        return data.decode(encoding), encoding
    except (UnicodeDecodeError, LookupError):
        raise ExtractionError(
            f"undecodable text: not UTF-8, and not valid {encoding} either"
        ) from None


def check_not_binary(text: str) -> None:
    """Refuse decoded text that is mostly control characters (binary junk without NULs)."""
    sample = text[:100_000]
    if not sample:
        return
    controls = len(_CONTROL.findall(sample))
    if controls > max(2, MAX_CONTROL_RATIO * len(sample)):
        raise ExtractionError(
            "unsupported type: binary data (not text, PDF or DOCX), whatever its name says"
        )

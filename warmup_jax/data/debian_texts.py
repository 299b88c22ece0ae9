"""Readers for the file formats of the Debian corpus packages.

`bible-kjv-text` ships the King James Bible as /usr/lib/bible.data: a header ("EC02
Compressed Data File"), a table of block offsets, then 64 KiB blocks each compressed with
Unix `compress` (LZW, up to 16-bit codes); the 3-byte .Z header is written once, just
before the first block.
`jargon-text` ships the Jargon File as one text file whose entries start with `   :term:`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

BRS_MAGIC = b"EC02"

BIBLE_BOOKS = (
    "Genesis",
    "Exodus",
    "Leviticus",
    "Numbers",
    "Deuteronomy",
    "Joshua",
    "Judges",
    "Ruth",
    "1 Samuel",
    "2 Samuel",
    "1 Kings",
    "2 Kings",
    "1 Chronicles",
    "2 Chronicles",
    "Ezra",
    "Nehemiah",
    "Esther",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Song of Solomon",
    "Isaiah",
    "Jeremiah",
    "Lamentations",
    "Ezekiel",
    "Daniel",
    "Hosea",
    "Joel",
    "Amos",
    "Obadiah",
    "Jonah",
    "Micah",
    "Nahum",
    "Habakkuk",
    "Zephaniah",
    "Haggai",
    "Zechariah",
    "Malachi",
    "Matthew",
    "Mark",
    "Luke",
    "John",
    "Acts",
    "Romans",
    "1 Corinthians",
    "2 Corinthians",
    "Galatians",
    "Ephesians",
    "Philippians",
    "Colossians",
    "1 Thessalonians",
    "2 Thessalonians",
    "1 Timothy",
    "2 Timothy",
    "Titus",
    "Philemon",
    "Hebrews",
    "James",
    "1 Peter",
    "2 Peter",
    "1 John",
    "2 John",
    "3 John",
    "Jude",
    "Revelation",
)

_VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")
_JARGON_BREAK = re.compile(r"^(?:(?:Chapter|Appendix|Part)\s\S+\.\s.+|   :[^:\n]+:.*)$", re.MULTILINE)


def lzw_decompress(stream: bytes, max_bits: int = 16) -> bytes:
    """Decodes a Unix `compress` code stream (block mode, without the 3-byte .Z header).

    Codes are packed LSB first; whenever the code width grows or a CLEAR code (256) arrives,
    the rest of the current group of 8 codes is padding and is skipped.
    """
    data = bytes(stream) + b"\0\0\0"
    total_bits = len(stream) * 8
    table = [bytes([i]) for i in range(256)] + [b""]
    n_bits, pos, group_origin = 9, 0, 0
    max_code = (1 << n_bits) - 1
    out: list[bytes] = []
    prev = None
    while pos + n_bits <= total_bits:
        if len(table) > max_code and n_bits < max_bits:
            pos = _next_group(pos, group_origin, n_bits)
            group_origin = pos
            n_bits += 1
            max_code = (1 << n_bits) - 1
            continue
        i = pos >> 3
        code = ((data[i] | data[i + 1] << 8 | data[i + 2] << 16) >> (pos & 7)) & max_code
        pos += n_bits
        if code == 256:
            pos = _next_group(pos, group_origin, n_bits)
            group_origin = pos
            del table[257:]
            n_bits, max_code, prev = 9, 511, None
            continue
        if prev is None:
            entry = table[code]
        elif code < len(table):
            entry = table[code]
            if len(table) < (1 << max_bits):
                table.append(prev + entry[:1])
        elif code == len(table):
            entry = prev + prev[:1]
            table.append(entry)
        else:
            raise ValueError(f"corrupt LZW stream: code {code} at bit {pos - n_bits}")
        out.append(entry)
        prev = entry
    return b"".join(out)


def _next_group(pos: int, origin: int, n_bits: int) -> int:
    group = n_bits * 8
    return origin + -(-(pos - origin) // group) * group


def decode_brs_bible(data: bytes) -> str:
    """The plain text of a bible.data file (one verse a line, e.g. `Ge1:1 In the beginning`)."""
    if not data.startswith(BRS_MAGIC):
        raise ValueError("not a bible.data file (missing EC02 magic)")
    _, block_size, num_blocks = struct.unpack(">3I", data[80:92])
    offsets = struct.unpack(f">{num_blocks + 1}I", data[92 : 96 + 4 * num_blocks])
    header = data[offsets[0] - 3 : offsets[0]]
    if header[:2] != b"\x1f\x9d" or offsets[-1] != len(data):
        raise ValueError("unexpected bible.data layout")
    max_bits = header[2] & 0x1F
    blocks = [lzw_decompress(data[a:b], max_bits) for a, b in zip(offsets[:-1], offsets[1:])]
    if any(len(b) != block_size for b in blocks[:-1]):
        raise ValueError("a bible.data block did not decompress to the block size")
    return b"".join(blocks).decode("latin-1")


def bible_chapters(text: str) -> Iterator[tuple[str, str]]:
    """Yields (chapter id, chapter text) for a verse-per-line Bible, e.g. ("01-Genesis/001", ...)."""
    book_of_abbrev: dict[str, int] = {}
    chapter_key, verses = None, []
    for line in text.splitlines():
        match = _VERSE.match(line)
        if not match:
            continue
        abbrev, chapter, verse, words = match.groups()
        book = book_of_abbrev.setdefault(abbrev, len(book_of_abbrev))
        if book >= len(BIBLE_BOOKS):
            raise ValueError(f"more than {len(BIBLE_BOOKS)} books (unknown abbreviation {abbrev!r})")
        key = (book, int(chapter))
        if key != chapter_key:
            if verses:
                yield _chapter(chapter_key, verses)
            chapter_key, verses = key, []
        verses.append(f"{verse} {words.strip()}")
    if verses:
        yield _chapter(chapter_key, verses)


def _chapter(key: tuple[int, int], verses: list[str]) -> tuple[str, str]:
    book, chapter = key
    name = BIBLE_BOOKS[book]
    doc_id = f"{book + 1:02d}-{name.replace(' ', '_')}/{chapter:03d}"
    return doc_id, f"{name} {chapter}\n\n" + "\n".join(verses) + "\n"


def jargon_entries(text: str) -> Iterator[tuple[str, str]]:
    """Yields (entry id, text): one per lexicon entry, chapter or appendix of the Jargon File."""
    text = text.replace("\xa0", " ")
    starts = [m.start() for m in _JARGON_BREAK.finditer(text)]
    bounds = [0, *starts, len(text)]
    for number, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        lines = [
            line.strip() if i == 0 else line[3:] if line.startswith("   ") else line
            for i, line in enumerate(text[start:end].strip("\n").splitlines())
        ]
        entry = "\n".join(lines).strip()
        if entry:
            yield f"{number:05d}", entry + "\n"

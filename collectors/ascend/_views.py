"""``npu-smi info -t VIEW -i NPU [-c CHIP]`` split by the ids it states: per chip, card, MCU.

One view of a card prints its chips one after another, and the order of the ``Chip ID`` line
differs by view and product (npu-smi's own source, hicann/driver
``src/custom/dev_prod/user/npucli``): ``-t common`` prints it first in each chip's block,
``-t usages``/``power``/``temp``/``health``/``memory`` print it last (first on 310/310B); the
card's MCU follows as a block named ``Chip Name : mcu`` (``MCU``) with the board-level
temperature and, on 310/310P, the card's power. Blocks are separated by blank lines. A block
is attributed by the ids it states, never by its position, so the second chip of a 310P
never gets the first chip's values and the MCU's power never lands on a chip:

- a block with a ``Chip ID`` line belongs to that chip (several ``Chip ID`` lines in one
  block are split before each when the block starts with one, after each otherwise);
- a block naming an MCU or control CPU (``Chip Name`` mcu, MCU, 3559) without a ``Chip ID``
  is the card's board controller;
- the header block (``NPU ID``, ``Chip Count``, the card-wide ``-t board`` keys) is the card's;
- a block stating nothing belongs to the chip the view was asked for (``-c``), if any.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from computewatch.collectors import ParseError
from computewatch.collectors.ascend._parse import errors_or_raise

__all__ = ["ViewBlocks", "norm_key", "parse_view"]

_CONTROLLERS = frozenset({"mcu", "3559"})  # npu-smi's names of a card's MCU and control CPU
_CARD_KEYS = frozenset({"npuid", "chipcount"})


_BLANKS = str.maketrans("", "", " \t\r\n\v\f")


def norm_key(key: str) -> str:
    """A key as npu-smi spells it in any version: lower case, no blanks (``Temperature (C)``)."""
    return key.lower().translate(_BLANKS)


@dataclass
class ViewBlocks:
    """One view's values by what they describe; keys as `norm_key` gives them."""

    chips: dict[int, dict[str, str]] = field(default_factory=dict)
    card: dict[str, str] = field(default_factory=dict)
    mcu: dict[str, str] = field(default_factory=dict)

    def chip(self, chip_id: int) -> dict[str, str]:
        return self.chips.get(chip_id, {})


def parse_view(text: str, source: str, chip: int | None = None,
               errors: list[ParseError] | None = None) -> ViewBlocks:
    """Split one view's output into per-chip, card and MCU values (see the module doc).

    ``chip`` is the ``-c`` the view was asked for. Output with no ``Key : Value`` line at all
    (a binary, an error text) raises `ParseError`; lines that are not ``Key : Value`` among
    good ones cost one `ParseError` for the whole output (raised, or appended to ``errors``
    when given, and the good lines kept): errors count outputs, not lines.
    """
    out = ViewBlocks()
    lines = text.splitlines()
    blocks: list[list[tuple[str, str]]] = [[]]
    seen = 0
    bad: tuple[int, str] | None = None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            bad = bad or (no, line)
            continue
        seen += 1
        blocks[-1].append((norm_key(key), value.strip()))
    if not seen:
        first = next(((n, ln) for n, ln in enumerate(lines, 1) if ln.strip()), None)
        raise ParseError(source, "no 'Key : Value' lines", *(first or (None, None)))
    if bad is not None:
        errors_or_raise(errors, ParseError(source, "expected 'Key : Value'", *bad))
    for block in blocks:
        for part in _split_chips(block):
            _place(out, part, chip)
    return out


def _split_chips(block: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """One block per ``Chip ID`` where a block holds several (no blank line between chips)."""
    at = [i for i, (k, _) in enumerate(block) if k == "chipid"]
    if len(at) < 2:
        return [block]
    body = [i for i, (k, _) in enumerate(block) if k not in _CARD_KEYS]
    leads = bool(body) and body[0] == at[0]  # "Chip ID" first: it opens each chip's part
    cuts = at if leads else [i + 1 for i in at[:-1]]
    parts, start = [], 0
    for cut in cuts:
        if cut > start:
            parts.append(block[start:cut])
            start = cut
    parts.append(block[start:])
    return [p for p in parts if p]


def _place(out: ViewBlocks, block: list[tuple[str, str]], chip: int | None) -> None:
    values: dict[str, str] = {}
    for key, value in block:
        values.setdefault(key, value)
    chip_id = values.get("chipid", "")
    name = values.get("chipname", "").strip().lower()
    if chip_id.isdigit():
        target = out.chips.setdefault(int(chip_id), {})
    elif name in _CONTROLLERS:
        target = out.mcu
    elif set(values) <= _CARD_KEYS or "npuid" in values or chip is None:
        target = out.card
    else:
        target = out.chips.setdefault(chip, {})
    for key, value in values.items():
        target.setdefault(key, value)

"""``disentkit presets [TEXT] [--long]``: the packaged presets as a table of name, method,
dataset and source (cut to the terminal's width), or with ``--long`` their full source notes."""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from dataclasses import dataclass

#: the table's width when standard output is not a terminal (and COLUMNS is unset)
PIPE_WIDTH = 120
#: the source column never gets narrower than this (lines then overflow a very narrow terminal)
MIN_SOURCE = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "presets", help="list packaged presets: name, method, dataset, source",
        description="List the packaged presets (train preset=NAME) with their method, dataset "
                    "and where their settings come from. Example: disentkit presets dsprites --long",
    )
    parser.add_argument("filter", nargs="?", default="", metavar="TEXT",
                        help="only presets whose name contains this text")
    parser.add_argument("--long", action="store_true",
                        help="print each preset's full source notes instead of the table")
    parser.set_defaults(handler=run)


@dataclass
class PresetInfo:
    name: str
    method: str
    dataset: str
    source: str


def preset_info(name: str) -> PresetInfo:
    """Method and dataset of the resolved preset (its ``base`` applied) and its own source note."""
    from importlib import resources

    import yaml

    from disentkit.config import load_preset

    data = load_preset(name)
    raw = yaml.safe_load((resources.files("disentkit") / "configs" / f"{name}.yaml").read_text())
    source = (raw or {}).get("source", "") if isinstance(raw, dict) else ""

    def section_name(section: str) -> str:
        value = data.get(section)
        return str(value.get("name", "-")) if isinstance(value, dict) else "-"

    return PresetInfo(name, section_name("model"), section_name("data"),
                      " ".join(str(source or "-").split()))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_table(presets: list[PresetInfo], width: int) -> str:
    """Aligned columns; the source is cut so each line fits in ``width`` characters."""
    header = PresetInfo("name", "method", "dataset", "source")
    widths = [max(len(getattr(p, f)) for p in [header, *presets]) for f in ("name", "method", "dataset")]
    room = max(width - sum(widths) - 2 * len(widths), MIN_SOURCE)

    def line(p: PresetInfo) -> str:
        cells = [p.name.ljust(widths[0]), p.method.ljust(widths[1]), p.dataset.ljust(widths[2])]
        return "  ".join([*cells, _clip(p.source, room)]).rstrip()

    rule = PresetInfo(*("-" * w for w in widths), "-" * min(room, max(len(p.source) for p in presets)))
    return "\n".join(line(p) for p in [header, rule, *presets]) + "\n"


def format_long(presets: list[PresetInfo], width: int) -> str:
    """Each preset's name, method and dataset, then its full source note wrapped to ``width``."""
    blocks = []
    for p in presets:
        # Paths and commit ids stay whole: no breaks inside words or at hyphens.
        note = textwrap.fill(p.source, width=max(width, 40), initial_indent="    ",
                             subsequent_indent="    ", break_long_words=False,
                             break_on_hyphens=False)
        blocks.append(f"{p.name}  (method {p.method}, dataset {p.dataset})\n{note}\n")
    return "\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    from disentkit.config import ConfigError, preset_names

    names = preset_names()
    chosen = [n for n in names if args.filter in n]
    if not chosen:
        shown = args.filter if len(args.filter) <= 40 else args.filter[:39] + "…"
        raise ConfigError(f"no preset name contains {shown!r}; the {len(names)} presets are "
                          "listed by disentkit presets (names look like betavae/dsprites)")
    presets = [preset_info(n) for n in chosen]
    width = shutil.get_terminal_size((PIPE_WIDTH, 24)).columns
    sys.stdout.write(format_long(presets, width) if args.long else format_table(presets, width))
    return 0

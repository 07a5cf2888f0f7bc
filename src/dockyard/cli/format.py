"""Tables, human durations and sizes, and `--format` (json or simple Go templates)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from dockyard.utils.durations import human_duration

_FIELD = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z]*)\s*\}\}")


def ago(timestamp: float) -> str:
    return human_duration(time.time() - timestamp) + " ago"


def human_size(n: float) -> str:
    units = ["B", "kB", "MB", "GB", "TB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.3g}{units[i]}"


def binary_size(n: float) -> str:
    """Docker's units.BytesSize: 1024-based, four significant digits (64MiB, 704.5KiB)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", text.strip().lower())
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    mult = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]
    return int(float(m.group(1)) * mult)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def render(template: str, record: dict[str, Any]) -> str:
    """`json` -> the record as JSON; else replace {{.Field}} and {{json .X}} placeholders."""
    if template.strip() == "json":
        return json.dumps(record, separators=(",", ":"))
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    if template.startswith("table "):
        template = template[len("table "):]

    def sub(m: re.Match[str]) -> str:
        as_json, field = m.group(1), m.group(2)
        value: Any = record if field == "" else record.get(field, "")
        if as_json:
            return json.dumps(value, separators=(",", ":"))
        return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    unknown = [f for f in re.findall(r"\{\{(.*?)\}\}", template) if not _FIELD.fullmatch("{{" + f + "}}")]
    if unknown:
        raise ValueError(f"template: not implemented: {{{{{unknown[0]}}}}}")
    return _FIELD.sub(sub, template)


def short_id(ident: str, trunc: bool = True) -> str:
    ident = ident.split(":", 1)[1] if ident.startswith("sha256:") else ident
    return ident[:12] if trunc else ident


def print_listing(records: list[dict[str, Any]], quiet: Any, template: str | None, headers: Sequence[str],
                  columns: Sequence[str], key: str = "ID", unique: bool = False) -> None:
    """A list command's output, as docker prints it: with --quiet each record's `key` (each value
    once when `unique`), with --format each record through the template, else a table."""
    if quiet:
        seen: set[Any] = set()
        for r in records:
            if not (unique and r[key] in seen):
                seen.add(r[key])
                print(r[key])
    elif template:
        for r in records:
            print(render(template, r))
    else:
        print(table(headers, [[r[c] for c in columns] for r in records]))


def print_documents(found: list[Any], template: str | None) -> None:
    """`inspect`'s output: each document through --format, else all of them as indented JSON."""
    if template:
        for item in found:
            print(render(template, item))
    else:
        print(json.dumps(found, indent=4))

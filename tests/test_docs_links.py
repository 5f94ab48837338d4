"""The docs point only at files that exist in this repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE_PATH = re.compile(r"`([\w./<>-]+\.(?:py|sql|md|toml|sh|json))`")


def _exists(doc: Path, target: str) -> bool:
    if "<" in target:  # a pattern such as store/sql/<dialect>/outbox.sql
        pattern = re.sub(r"<[^>]+>", "*", target)
        bases = (doc.parent, ROOT, ROOT / "src" / "relaybox")
        return any(list(base.glob(pattern)) for base in bases)
    bases = (doc.parent, ROOT, ROOT / "src" / "relaybox", ROOT / "src")
    return any((base / target).exists() for base in bases)


def test_markdown_links_point_at_files_in_the_repo() -> None:
    missing = [
        f"{doc.relative_to(ROOT)}: {target}"
        for doc in DOCS
        for target in LINK.findall(doc.read_text(encoding="utf-8"))
        if not target.startswith(("http://", "https://", "mailto:")) and not _exists(doc, target)
    ]
    assert missing == []


def test_architecture_names_only_modules_that_exist() -> None:
    doc = ROOT / "docs" / "architecture.md"
    missing = [
        path
        for path in CODE_PATH.findall(doc.read_text(encoding="utf-8"))
        if "/" in path and not _exists(doc, path)
    ]
    assert missing == []

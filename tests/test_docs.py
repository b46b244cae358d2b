"""The code cites the project's own docs: no reference leaves the repository, and every
``docs/<file>.md#anchor`` it cites is a heading of that file (GitHub's anchor slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("src", "tests", "benchmarks")
CODE_SUFFIXES = {".py", ".yaml", ".yml", ".sh", ".toml", ".md", ".txt"}
# The team's specification outside the repository; spelt in two parts so that this file
# does not mention it.
OUTSIDE_SPEC = "DESIGN" + ".md"
# docs/<file>.md, optionally with #anchor, as the code cites it.
DOC_CITE = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")
# Markdown links to a local .md file: [text](path.md#anchor).
MD_LINK = re.compile(r"\]\(([\w./-]+\.md)(?:#([\w-]+))?\)")


def code_files() -> list[Path]:
    return sorted(
        p for d in CODE_DIRS for p in (ROOT / d).rglob("*")
        if p.is_file() and p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts
    )


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped (letters,
    digits, spaces, ``-`` and ``_`` kept), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor in ``markdown``, fenced code skipped; repeated headings get
    GitHub's ``-1``, ``-2`` suffixes."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_slug_follows_github() -> None:
    assert slug("Ablations (the paper's Table 4)") == "ablations-the-papers-table-4"
    assert slug("Hierarchical parsing MoE") == "hierarchical-parsing-moe"
    assert slug("`history_mask` and ADC + HDA") == "history_mask-and-adc--hda"
    assert anchors("# A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}


def test_no_code_cites_the_outside_spec() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in code_files()
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_SPEC in line
    ]
    assert not offenders, f"cite docs/ instead of {OUTSIDE_SPEC}: {offenders}"


def _check(target: Path, anchor: str | None, where: str, problems: list[str]) -> None:
    if not target.is_file():
        problems.append(f"{where}: no file {target.relative_to(ROOT)}")
    elif anchor and anchor not in anchors(target.read_text(encoding="utf-8")):
        problems.append(f"{where}: no heading #{anchor} in {target.relative_to(ROOT)}")


def test_code_citations_of_docs_exist() -> None:
    problems: list[str] = []
    cited = 0
    for p in code_files():
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            for name, anchor in DOC_CITE.findall(line):
                cited += 1
                _check(ROOT / "docs" / name, anchor or None, f"{p.relative_to(ROOT)}:{i}",
                       problems)
    assert cited > 20  # the code does cite its docs (a broken pattern would find nothing)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", ["README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_markdown_links_to_local_pages_exist(page: str) -> None:
    path = ROOT / page
    problems: list[str] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for target, anchor in MD_LINK.findall(line):
            if "://" in target:
                continue
            _check((path.parent / target).resolve(), anchor or None, f"{page}:{i}", problems)
    assert not problems, "\n".join(problems)

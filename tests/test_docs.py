"""The docs cite only what the repository has: every relative markdown link resolves to a file or folder."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _markdown_files():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "launch").rglob("*.md"))]
    return [f for f in files if f.exists()]


def test_relative_links_in_the_docs_resolve():
    files = _markdown_files()
    assert len(files) >= 5, files  # README, docs/*.md, launch/README.md at least
    missing = []
    for md in files:
        for target in LINK.findall(md.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = (md.parent / target.split("#")[0]).resolve()
            if not path.exists():
                missing.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not missing, "links to files that are not in the repository: " + "; ".join(missing)

"""The documentation: a README for the people who use the pipeline, the rest in docs/,
links that resolve, and no file that tells how the project was built."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^#{1,6} (.*)", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_readme_is_short_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") < 250
    linked = {m.split("#")[0] for m in LINK.findall(readme)}
    assert PAGES and {f"docs/{p.name}" for p in PAGES} <= linked


def test_every_relative_link_resolves():
    broken = []
    for page in [ROOT / "README.md", *PAGES]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


# A work item's number, or the project's own history told as such.
HISTORY = re.compile(
    r"\bissues?[ #-]?\d+|\bthis session\b|\bbefore this (change|fix)\b|\bused to\b", re.I
)


def test_no_tracked_file_names_a_work_item_or_tells_history():
    files = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    found = []
    for name in files + [str(p.relative_to(ROOT)) for p in PAGES]:
        path = ROOT / name
        if HISTORY.search(name):
            found.append(f"{name}: its name")
        if path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".json", ""):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if HISTORY.search(line) and "HISTORY = re.compile" not in line:
                found.append(f"{name}:{i}: {line.strip()[:100]}")
    assert not found, "\n".join(found)

"""The documentation: the config reference matches the code, every key is in it, relative links resolve."""

import importlib.util
import re

from conftest import REPO

from distill_lora.config import describe

DOCS = REPO / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_generated_from_the_code():
    gen = _generator()
    assert gen.TARGET == DOCS / "config.md"
    assert gen.TARGET.read_text() == gen.render(), (
        "docs/config.md differs from the config dataclasses' help texts: "
        "run `python scripts/config_reference.py` and commit docs/config.md"
    )


def test_config_reference_documents_every_key():
    """Moved from tests/test_config.py (was: the README's config reference)."""
    page = (DOCS / "config.md").read_text()
    missing = [k for k, _, _ in describe() if f"| `{k}` |" not in page]
    assert not missing, f"docs/config.md lacks {missing}: run `python scripts/config_reference.py`"


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _doc_files():
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def test_every_relative_link_points_to_an_existing_file():
    broken = []
    for doc in _doc_files():
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # links inside code blocks are not links
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # http:, https:, mailto:, same-page anchors
            path = target.split("#", 1)[0]
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert not broken, f"relative links to missing files: {broken}"


def test_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if f"(docs/{p.name})" not in readme]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_every_docs_page_starts_with_a_title_and_a_one_line_summary():
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# "), f"{page.name}: first line is not a title"
        assert lines[1] == "" and lines[2].strip(), f"{page.name}: no summary line under the title"


def test_readme_keeps_the_newcomer_commands():
    readme = (REPO / "README.md").read_text()
    for text in ("make demo", "make test", "source .venv/bin/activate", ".venv/bin/distill-lora"):
        assert text in readme, f"README.md lost {text!r}"

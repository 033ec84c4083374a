"""The README's manifest reference is the one generated from the schema, verbatim."""

from __future__ import annotations

from pathlib import Path

from reconciler.model.reference import manifest_reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- manifest-reference:start -->", "<!-- manifest-reference:end -->"


def test_readme_reference_matches_the_schema() -> None:
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    assert START in text and END in text, f"README.md lost its {START} ... {END} markers"
    embedded = text.split(START, 1)[1].split(END, 1)[0]
    assert embedded.strip() == manifest_reference_markdown().strip(), (
        "README manifest reference is stale: replace the text between the markers with the output of "
        "reconciler.model.reference.manifest_reference_markdown()"
    )

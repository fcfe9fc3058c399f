"""docs/api.md is generated from the docstrings and must match them; public callables document their parameters."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def make_api_docs():
    spec = importlib.util.spec_from_file_location("make_api_docs", ROOT / "scripts" / "make_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_page_is_up_to_date(make_api_docs):
    current = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert current == make_api_docs.render(), "docs/api.md is stale: run python scripts/make_api_docs.py"


def test_every_public_name_is_on_the_page(make_api_docs):
    import napari_sem_analysis as sem

    text = make_api_docs.render()
    for name in sem._API:
        assert f"\n### {name}\n" in text, name


def test_public_callables_document_their_parameters(make_api_docs):
    missing = []
    for module_name, items in make_api_docs.public_objects().items():
        for name, obj in items:
            summary, sections = make_api_docs.doc_sections(obj.__doc__)
            if not summary:
                missing.append(f"{module_name}.{name}: no docstring summary")
            if not make_api_docs.takes_parameters(obj):
                continue
            # dataclass-like classes document their fields as Attributes
            wanted = ("Parameters", "Attributes") if inspect.isclass(obj) else ("Parameters",)
            if not any(w in sections for w in wanted):
                missing.append(f"{module_name}.{name}: no {' / '.join(wanted)} section")
    assert not missing, missing


def test_doc_sections_parses_numpydoc(make_api_docs):
    doc = """Do a thing.

    More words.

    Parameters
    ----------
    x : int
        The x.

    Returns
    -------
    float
        The result.
    """
    summary, sections = make_api_docs.doc_sections(doc)
    assert summary == "Do a thing."
    assert set(sections) == {"Parameters", "Returns"}
    assert make_api_docs._render_fields(sections["Parameters"]) == ["- **x** (*int*): The x."]

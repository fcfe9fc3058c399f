"""Write ``docs/api.md``: the API reference generated from the numpydoc docstrings.

Every public name of ``napari_sem_analysis._API`` is listed, grouped by the module that defines
it, with its signature, the summary line of its docstring and its Parameters / Returns sections
rendered as markdown. Run it after changing a public docstring::

    python scripts/make_api_docs.py          # rewrites docs/api.md
    python scripts/make_api_docs.py --check  # exit 1 when docs/api.md is stale

``tests/test_api_docs.py`` regenerates the page in memory and fails when the file is out of date.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"
_RENDERED = ("Parameters", "Attributes", "Returns", "Yields", "Raises")
_HEADER = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\s*$", re.M)


def doc_sections(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a numpydoc docstring into its summary and its sections.

    Parameters
    ----------
    doc : str or None
        The raw docstring.

    Returns
    -------
    summary : str
        The first paragraph, joined onto one line ("" when there is no docstring).
    sections : dict of str to str
        Section title ("Parameters", "Returns", ...) -> the dedented section body.
    """
    text = inspect.cleandoc(doc or "")
    matches = list(_HEADER.finditer(text))
    head = text[: matches[0].start()] if matches else text
    summary = " ".join(head.strip().split("\n\n")[0].split())
    sections: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[m.group("title").strip()] = text[m.end() : end].strip("\n")
    return summary, sections


def _render_fields(body: str) -> list[str]:
    """Render a numpydoc field list (``name : type`` + indented text) as markdown bullets."""
    out: list[str] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            name, _, typ = line.partition(" : ")
            out.append(f"- **{name.strip()}**" + (f" (*{typ.strip()}*)" if typ.strip() else "") + ":")
        elif out:
            out[-1] += " " + line.strip()
        else:
            out.append("- " + line.strip())
    return [o.rstrip(":") if o.endswith(":") else o for o in out]


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return re.sub(r" at 0x[0-9a-f]+", "", sig)


def takes_parameters(obj) -> bool:
    """Whether a public callable takes any parameter a caller passes (``self``/``cls`` excluded).

    Parameters
    ----------
    obj : callable
        A function or class.

    Returns
    -------
    bool
        True when the signature names at least one parameter.
    """
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False
    return any(p not in ("self", "cls") for p in params)


def public_objects() -> dict[str, list[tuple[str, object]]]:
    """The public names of ``_API`` grouped by defining module, in ``_API`` order.

    Returns
    -------
    dict of str to list of (str, object)
        Module name -> [(public name, object), ...].
    """
    import napari_sem_analysis as sem

    groups: dict[str, list[tuple[str, object]]] = {}
    for name, module_name in sem._API.items():
        module = importlib.import_module(f"napari_sem_analysis.{module_name}")
        groups.setdefault(module_name, []).append((name, getattr(module, name)))
    return groups


def render() -> str:
    """The full markdown text of ``docs/api.md``.

    Returns
    -------
    str
        The page, ending in a newline.
    """
    groups = public_objects()
    lines = [
        "# API reference",
        "",
        "Generated from the numpydoc docstrings by `python scripts/make_api_docs.py`; do not edit by hand",
        "(`tests/test_api_docs.py` fails when this page is stale). Every name is importable as",
        "`import napari_sem_analysis as sem; sem.<name>`. See [architecture.md](architecture.md) for where",
        "each module sits.",
        "",
        "## Contents",
        "",
    ]
    for module_name, items in groups.items():
        names = ", ".join(f"[`{n}`](#{n.lower()})" for n, _ in items)
        lines.append(f"- `{module_name}`: {names}")
    for module_name, items in groups.items():
        module = importlib.import_module(f"napari_sem_analysis.{module_name}")
        mod_summary, _ = doc_sections(module.__doc__)
        lines += ["", f"## `{module_name}`", ""]
        if mod_summary:
            lines += [mod_summary, ""]
        for name, obj in items:
            kind = "class" if inspect.isclass(obj) else "function"
            summary, sections = doc_sections(getattr(obj, "__doc__", None))
            lines += [f"### {name}", "", "```python", f"{kind} {name}{_signature(obj)}", "```", ""]
            if summary:
                lines += [summary, ""]
            for title in _RENDERED:
                if title in sections:
                    lines += [f"**{title}**", "", *_render_fields(sections[title]), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/api.md, or with ``--check`` report whether it is up to date.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 when written or up to date, 1 when ``--check`` finds it stale.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/api.md is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = API_MD.read_text(encoding="utf-8") if API_MD.exists() else ""
        if current != text:
            print("docs/api.md is stale: run python scripts/make_api_docs.py", file=sys.stderr)
            return 1
        return 0
    API_MD.write_text(text, encoding="utf-8")
    print(f"wrote {API_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Assemble docs/evaluation.md from the sections the evaluation scripts write.

Each script in benchmarks/ writes its own section to docs/evaluation/<topic>.md;
this joins them, in a fixed order, under one heading.

    python benchmarks/assemble_evaluation.py
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = ["reader", "classical", "measurement", "unet", "classification", "batch"]

HEADER = """# Evaluation and benchmarks

Accuracy on real micrographs with ground truth (from `../shared/data`, never committed) and speed as
ratios against the reference implementations, measured in one run each on the development machine
(2 CPU cores, no GPU unless a section says otherwise). Every section names the script that produced it;
rerun it to reproduce the figures.
"""


def main() -> None:
    sections = REPO / "docs" / "evaluation"
    parts = [HEADER]
    names = [n for n in ORDER if (sections / f"{n}.md").exists()]
    names += sorted(p.stem for p in sections.glob("*.md") if p.stem not in ORDER)
    for name in names:
        parts.append((sections / f"{name}.md").read_text().strip() + "\n")
    (REPO / "docs" / "evaluation.md").write_text("\n\n".join(parts))
    print(f"docs/evaluation.md: {len(names)} sections ({', '.join(names)})")


if __name__ == "__main__":
    main()

"""Reader check on the real micrographs: pixel size and info band of every file.

    python benchmarks/eval_reader.py [DATA_DIR] [--out docs/evaluation/reader.md]

DATA_DIR defaults to ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import napari_sem_analysis as sem

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "docs" / "evaluation" / "reader.md"))
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"data folder {data} not found: nothing to evaluate")
        return 0
    rows = []
    sets = {
        "bam-tio2-sem": sorted((data / "bam-tio2-sem" / "images").glob("*.tif")),
        "aquami-nanoporous-gold": [data / "aquami-nanoporous-gold" / "Sample.tif"],
        "nasa-ebc": sorted((data / "nasa-ebc").glob("*/images/*"))[:3],
        "nanofiber-sem": sorted((data / "nanofiber-sem").glob("*/*.tif"))[:3],
        "nrcan-shale-sem": sorted((data / "nrcan-shale-sem" / "images").glob("*.tif"))[:3],
    }
    for name, files in sets.items():
        for f in files:
            if not f.exists():
                continue
            with_band = sem.read_sem(f, crop_databar=False)
            img = sem.read_sem(f)
            rows.append(
                (
                    name,
                    f.name,
                    "x".join(map(str, with_band.data.shape)),
                    "x".join(map(str, img.data.shape)),
                    img.metadata.get("databar_row"),
                    f"{img.pixel_size:.4g}" if img.pixel_size else "unknown",
                    img.metadata.get("instrument"),
                    img.metadata.get("detector", ""),
                )
            )
    # binary masks and padded images have no info band: every row must be kept
    no_band = (
        sorted((data / "bam-tio2-sem" / "masks").glob("*.tif"))
        + sorted((data / "nrcan-shale-sem" / "masks").glob("*.tif"))
        + sorted((data / "nanofiber-sem").glob("*/*.tif"))
    )
    kept = sum(sem.read_sem(f).data.shape == sem.read_sem(f, crop_databar=False).data.shape for f in no_band)
    bam = [r for r in rows if r[0] == "bam-tio2-sem"]
    ok = sum(r[3] == "712x1024" and r[5] == "7.344" for r in bam)
    lines = [
        "## Reader: pixel size and info band on the real files",
        "",
        "Produced by `python benchmarks/eval_reader.py`. The BAM images are 1024x768 Zeiss files whose info band",
        "starts at row 712; the expected result is a 712x1024 image at 7.344 nm per pixel.",
        "",
        f"BAM: {ok} of {len(bam)} files give 712x1024 at 7.344 nm/px.",
        "",
        f"Files without an info band (BAM and NRCan binary masks, nanofiber images with a few rows of black "
        f"padding): {kept} of {len(no_band)} keep every row.",
        "",
        "| set | file | file shape | image shape | band row | pixel size (nm) | instrument | detector |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    lines.append("")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time ``read_sem`` on real Zeiss TIFFs: how much the info-band scale-bar read adds to opening a file.

    python benchmarks/bench_read_sem_band.py [DATA_DIR] [--repeat 3]

Every Zeiss TIFF with an info band pays ``read_scale_bar`` on open (the band is cross-checked
against the metadata). Prints, per file, the median time of ``read_sem`` and of
``read_sem(..., scale_bar=False)`` in the same process (the reference), and the median difference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import napari_sem_analysis as sem  # noqa: E402


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    data = Path(args.data)
    files = sorted((data / "bam-tio2-sem" / "images").glob("*.tif")) + sorted(
        (data / "aquami-nanoporous-gold").glob("*.tif")
    )
    if not files:
        print(f"no Zeiss TIFFs under {data}: nothing to time")
        return 0
    sem.read_sem(files[0])  # imports and glyph templates loaded once, as in a session
    extra = []
    print("| file | read_sem | without band read | band read adds |")
    print("|---|---|---|---|")
    for f in files:
        with_band = _median_time(lambda f=f: sem.read_sem(f), args.repeat)
        without = _median_time(lambda f=f: sem.read_sem(f, scale_bar=False), args.repeat)
        extra.append(with_band - without)
        print(f"| {f.parent.name}/{f.name} | {with_band:.3f} s | {without:.3f} s | {with_band - without:.3f} s |")
    print(f"\n{len(files)} files: the band read adds a median {np.median(extra):.3f} s per file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

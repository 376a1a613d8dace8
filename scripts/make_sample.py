"""Rebuild src/modalfuse/sample_data/ (the bundled catalogue) from ../shared/data/fashion.

Picks 2,000 products by the SHA-1 of their id (a fixed pseudo-random sample that needs no RNG
state) and copies their thumbnails. Usage: python scripts/make_sample.py [SRC] [DST] [N]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/fashion")
    dst = Path(sys.argv[2] if len(sys.argv) > 2 else "src/modalfuse/sample_data")
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    rows = [
        json.loads(line)
        for line in (src / "products.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    rows = [r for r in rows if (src / r["image"]).is_file()]
    rows.sort(key=lambda r: hashlib.sha1(r["id"].encode()).hexdigest())
    picked = sorted(rows[:n], key=lambda r: int(r["id"]))
    (dst / "images").mkdir(parents=True, exist_ok=True)
    with (dst / "products.jsonl").open("w", encoding="utf-8") as out:
        for row in picked:
            shutil.copyfile(src / row["image"], dst / row["image"])
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(picked)} products to {dst}")


if __name__ == "__main__":
    main()

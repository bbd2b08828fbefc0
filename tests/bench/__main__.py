"""`make bench`: run every benchmark module in its own process and print their JSON figures."""

import subprocess
import sys
import time
from pathlib import Path

BENCHES = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))

if __name__ == "__main__":
    only = sys.argv[1:]
    failed = 0
    for index, name in enumerate(BENCHES, 1):
        if only and name not in only:
            continue
        print(f"[{index}/{len(BENCHES)}] {name} ...", file=sys.stderr, flush=True)
        started = time.time()
        code = subprocess.call([sys.executable, "-m", f"tests.bench.{name}"])
        print(
            f"[{index}/{len(BENCHES)}] {name} done in {time.time() - started:.0f} s (exit {code})",
            file=sys.stderr,
            flush=True,
        )
        failed += code != 0
    sys.exit(1 if failed else 0)

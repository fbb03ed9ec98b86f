"""Last step of the contract tests (scripts/test.sh): the three clients agree.

    .venv/bin/python scripts/contract_check.py DIR

DIR is scripts/contract_server.py's directory. Each language's contract test has
written its scenario lines there (python.jsonl, go.jsonl, java.jsonl) and the output
of its README snippet (readme-python.txt, readme-go.txt, readme-java.txt); a missing
file means that test did not run (skipped?), which fails here. Every language's lines
must match expected.json and each other's: compared as parsed JSON, numbers within
1e-9 relative, error messages only on the field an INVALID_ARGUMENT one names
(couponrank.client.scenario.normalize / differences).
"""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path

from couponrank.client.scenario import differences, normalize

LANGUAGES = ("python", "go", "java")


def load_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    d = Path(argv[0])
    problems = []
    missing = [f"{d / f}" for lang in LANGUAGES for f in (f"{lang}.jsonl", f"readme-{lang}.txt") if not (d / f).exists()]
    if missing:
        print("contract_check: FAILED: these contract test outputs are missing (did a test skip?):\n  "
              + "\n  ".join(missing), file=sys.stderr)
        return 1
    expected = [normalize(e) for e in json.loads((d / "expected.json").read_text())]
    got = {lang: [normalize(x) for x in load_lines(d / f"{lang}.jsonl")] for lang in LANGUAGES}
    runs = {"expected": expected, **got}
    for a, b in combinations(runs, 2):
        if len(runs[a]) != len(runs[b]):
            problems.append(f"{a} has {len(runs[a])} lines, {b} has {len(runs[b])}")
            continue
        for want, have in zip(runs[a], runs[b]):
            for diff in differences(want, have):
                problems.append(f"{a} vs {b}, scenario {want.get('index')} {want.get('name')!r}: {diff}")
    if problems:
        print(f"contract_check: FAILED: {len(problems)} differences\n  " + "\n  ".join(problems[:50]), file=sys.stderr)
        return 1
    print(f"contract_check: python, go and java agree with each other and with the server on "
          f"{len(expected)} scenarios")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

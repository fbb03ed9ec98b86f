"""ghz, the gRPC load tool, for the benches: the one on PATH, or installed into
bench/.bin with `go install` on first use."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GHZ_VERSION = "v0.121.0"
BIN = Path(__file__).resolve().parent / ".bin"


def ghz_binary() -> Path:
    found = shutil.which("ghz")
    if found:
        return Path(found)
    target = BIN / "ghz"
    if not target.exists():
        print(f"installing ghz {GHZ_VERSION} with go install ...", flush=True)
        subprocess.run(["go", "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"], check=True,
                       env={**os.environ, "GOBIN": str(BIN)})
    return target

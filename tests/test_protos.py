"""The API contract (protos/): lint, generated code up to date, no breaking change.

* ``buf lint`` on protos/ is clean (rules in protos/buf.yaml).
* The committed generated code — Python in couponrank/v1/, Go in
  clients/go/couponrankv1/ — is what scripts/gen_protos.sh makes from the current
  protos (regenerated into a temp dir and compared file by file).
* ``buf breaking`` finds no breaking change against the main branch's protos/, when
  main has protos to compare with.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
GEN_SCRIPT = ROOT / "scripts" / "gen_protos.sh"

PY_GEN_DIR = Path("couponrank/v1")
PY_GEN_GLOBS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
GO_GEN_DIR = Path("clients/go/couponrankv1")
GO_GEN_GLOBS = ("*.pb.go",)


def _buf() -> str:
    """The buf binary of the buf-bin package (dev extra), next to this Python first."""
    local = Path(sys.executable).parent / "buf"
    if local.exists():
        return str(local)
    found = shutil.which("buf")
    if found is None:
        pytest.fail("buf not found: install the dev extra (pip install -e '.[dev]', buf-bin)")
    return found


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def _generated(root: Path, rel: Path, globs: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for g in globs:
        for p in sorted((root / rel).glob(g)):
            out[p.name] = p
    return out


def _assert_same(committed: dict[str, Path], fresh: dict[str, Path], what: str) -> None:
    hint = "run scripts/gen_protos.sh and commit the result"
    assert fresh, f"generation produced no {what} files"
    missing = sorted(set(fresh) - set(committed))
    stale = sorted(set(committed) - set(fresh))
    assert not missing, f"{what}: generated files not committed: {missing}; {hint}"
    assert not stale, f"{what}: committed files no protos generate any more: {stale}; {hint}"
    differ = [n for n in sorted(fresh) if not filecmp.cmp(fresh[n], committed[n], shallow=False)]
    assert not differ, f"{what}: committed code is out of date: {differ}; {hint}"


def test_buf_lint_clean():
    res = _run([_buf(), "lint", "protos"])
    assert res.returncode == 0, f"buf lint:\n{res.stdout}{res.stderr}"


def test_buf_format_clean():
    res = _run([_buf(), "format", "--diff", "--exit-code", "protos"])
    assert res.returncode == 0, f"buf format (run `buf format -w protos`):\n{res.stdout}{res.stderr}"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """scripts/gen_protos.sh output in a temp dir (Python, and Go when go is installed)."""
    out = tmp_path_factory.mktemp("gen")
    cmd = ["bash", str(GEN_SCRIPT), "--out", str(out)]
    if shutil.which("go") is None:
        cmd.append("--python-only")
    env = dict(os.environ, PYTHON=sys.executable)
    res = _run(cmd, env=env)
    assert res.returncode == 0, f"gen_protos.sh failed:\n{res.stdout}{res.stderr}"
    return out


def test_python_generated_code_up_to_date(regenerated: Path):
    _assert_same(
        _generated(ROOT, PY_GEN_DIR, PY_GEN_GLOBS),
        _generated(regenerated, PY_GEN_DIR, PY_GEN_GLOBS),
        "Python",
    )


def test_go_generated_code_up_to_date(regenerated: Path):
    if shutil.which("go") is None:
        pytest.skip("go is not installed: cannot regenerate the Go code")
    _assert_same(
        _generated(ROOT, GO_GEN_DIR, GO_GEN_GLOBS),
        _generated(regenerated, GO_GEN_DIR, GO_GEN_GLOBS),
        "Go",
    )


def test_python_generated_code_imports():
    from couponrank.v1 import coupon_ranking_service_pb2 as pb
    from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

    service = pb.DESCRIPTOR.services_by_name["CouponRankingService"]
    assert sorted(m.name for m in service.methods) == ["GetModelInfo", "RankCoupons", "RecordEvents"]
    assert hasattr(pb_grpc, "CouponRankingServiceStub")
    req = pb.RankCouponsRequest(
        user_id="u",
        context=pb.RequestContext(
            placement=pb.PLACEMENT_CART, cart_total=pb.Money(currency_code="USD", amount_minor=1999)
        ),
    )
    assert pb.RankCouponsRequest.FromString(req.SerializeToString()) == req


def _git(*args: str) -> subprocess.CompletedProcess:
    return _run(["git", *args])


def test_buf_breaking_against_main():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if _git("rev-parse", "--verify", "--quiet", "refs/heads/main^{commit}").returncode != 0:
        pytest.skip("no local main branch to compare the protos with")
    tree = _git("ls-tree", "-r", "--name-only", "main", "--", "protos/")
    if tree.returncode != 0 or not any(n.endswith(".proto") for n in tree.stdout.split()):
        pytest.skip(
            "main has no protos/ yet (first commit of the API): nothing to check for breaking changes"
        )
    # The repository's git directory (also right in a worktree, where .git is a file).
    git_dir = _git("rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip()
    against = f"{git_dir}#format=git,branch=main,subdir=protos"
    res = _run([_buf(), "breaking", "protos", "--against", against])
    assert res.returncode == 0, (
        "breaking change against main's protos/ (never reuse or renumber fields; "
        f"reserve removed ones):\n{res.stdout}{res.stderr}"
    )

"""Cross-language contract, Python side: the scenarios of scripts/contract_server.py
through the Python client against the live server, compared with the answers of the
same server objects called in process; the README's Python snippet run against it.

Under scripts/test.sh one server serves the Python, Go and Java contract tests
(COUPONRANK_CONTRACT_ADDR, COUPONRANK_CONTRACT_DIR); each writes its lines to
DIR/<language>.jsonl and scripts/contract_check.py checks the three agree. Run alone
(plain `pytest`), this module starts its own contract server (~20 s).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from couponrank.client import CouponRankClient
from couponrank.client import scenario

pytestmark = pytest.mark.clock  # date-sensitive: run again with the clock moved ahead

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 300  # seconds for the contract server to build its workspace and start


# ================================================================== the runner, no server
def test_parse_rejects_unknown_keys_and_wrong_types():
    assert scenario.parse('[{"user_id": "u1", "placement": null, "top_k": 3}]') == [{"user_id": "u1", "top_k": 3}]
    for bad, message in (('{"user_id": "u1"}', "JSON array"), ('[{"user_id": "u1", "topk": 3}]', 'unknown key "topk"'),
                         ('[{"top_k": "3"}]', "top_k: want an integer"), ('[{"explain": 1}]', "explain: want true"),
                         ('[{"top_k": true}]', "top_k: want an integer"),
                         ('[{"cart_brands": ["a", 1]}]', "cart_brands: want a list of strings"), ("[1]", "not an object")):
        with pytest.raises(ValueError, match=re.escape(message)):
            scenario.parse(bad)


def test_a_scenario_becomes_the_request_the_go_and_java_runners_send():
    s = {"request_id": "r", "user_id": "u1", "candidate_coupon_ids": ["c1"], "placement": "PLACEMENT_CART",
         "cart_categories": ["a"], "cart_brands": ["b"], "cart_merchant_ids": ["m"], "cart_total_minor": 4599,
         "request_time": "2026-07-01T10:00:00.5Z", "top_k": 2, "explain": True}
    r = scenario.to_request(s)
    assert (r.request_id, r.user_id, list(r.candidate_coupon_ids), r.top_k, r.explain) == ("r", "u1", ["c1"], 2, True)
    c = r.context
    assert (c.placement, list(c.cart_categories), list(c.cart_brands), list(c.cart_merchant_ids)) == (
        scenario.pb.PLACEMENT_CART, ["a"], ["b"], ["m"])
    assert (c.cart_total.currency_code, c.cart_total.amount_minor) == ("", 4599)  # currency as given: none
    assert (c.request_time.seconds, c.request_time.nanos) == (1782900000, 500_000_000)
    assert not scenario.to_request({"user_id": "u"}).context.HasField("cart_total")  # absent: not sent
    assert scenario.to_request({"currency_code": "USD"}).context.HasField("cart_total")
    assert [scenario.placement(p) for p in ("cart", "CART", "PLACEMENT_CART", "")] == [
        scenario.pb.PLACEMENT_CART] * 3 + [scenario.pb.PLACEMENT_UNSPECIFIED]
    for bad in ({"placement": "basket"}, {"request_time": "2026-07-01T10:00:00"}, {"request_time": "July"}):
        with pytest.raises(ValueError):
            scenario.to_request(bad)


def test_lines_compare_as_parsed_json():
    assert scenario.differences({"a": [1, 0.5, None, True]}, {"a": [1.0, 0.5 * (1 + 1e-12), None, True]}) == []
    assert scenario.differences({"a": 1.0}, {"a": 1.001}) == [".a: want 1.0, got 1.001"]
    assert scenario.differences({"a": True}, {"a": 1}) == [".a: want True, got 1"]
    assert scenario.differences({"a": [1]}, {"a": [1], "b": 2}) == [".b: unexpected 2"]
    want = scenario.normalize({"ok": False, "error_code": "INVALID_ARGUMENT", "error_field": "user_id"})
    assert scenario.differences(want, scenario.normalize(
        {"ok": False, "error_code": "INVALID_ARGUMENT", "error_message": "user_id: must not be empty"})) == []
    assert scenario.differences(want, scenario.normalize(
        {"ok": False, "error_code": "INVALID_ARGUMENT", "error_message": "top_k: must not be negative"}))
    assert scenario.normalize({"ok": False, "error_code": "UNAVAILABLE", "error_message": "x"}) == {
        "ok": False, "error_code": "UNAVAILABLE"}


# ================================================================== against the live server
@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    """(address, directory) of the contract server: scripts/test.sh's, or one started here."""
    addr, d = os.environ.get("COUPONRANK_CONTRACT_ADDR"), os.environ.get("COUPONRANK_CONTRACT_DIR")
    if addr and d:
        yield addr, Path(d)
        return
    d = tmp_path_factory.mktemp("contract")
    log = open(d / "server.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "contract_server.py"), "--dir", str(d)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (d / "server.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the contract server did not start:\n{(d / 'server.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield json.loads((d / "server.json").read_text())["addr"], d
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_scenario_picks_do_not_depend_on_the_cpus_sort_kernel(contract, tmp_path):
    """numpy's quicksort (under pandas' value_counts and one-key sort_values) orders
    ties by the CPU's SIMD kernels: on another machine the old "most active user" was
    another user, whose limits broke a scenario. Pick the scenarios again on the same
    workspace with numpy's AVX2 and AVX-512 kernels switched off; they must not change
    (on a CPU without them both runs use the same kernel and agree trivially)."""
    _, d = contract
    (tmp_path / "work").symlink_to(d / "work")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4"}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "contract_server.py"), "--dir", str(tmp_path),
                          "--scenarios-only"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "scenarios.json").read_text()) == json.loads((d / "scenarios.json").read_text())


def _run_prefix(name: str) -> str:
    """An event id prefix of this run's own: scripts/test.sh runs this module twice
    (the second time with the clock moved ahead) against one contract server, and each
    run must record new events. The prefix never reaches the compared lines."""
    return f"{name}-{uuid.uuid4().hex[:8]}/"


def test_python_client_answers_match_the_server(contract):
    addr, d = contract
    scenarios = scenario.parse((d / "scenarios.json").read_text())
    out = io.StringIO()
    with CouponRankClient(addr, timeout=20.0) as client:
        assert client.wait_for_ready(30), f"cannot connect to the contract server at {addr}"
        client.model_info()  # warm-up: connection costs stay out of the first scenario's deadline
        scenario.run_all(client, scenarios, out, event_id_prefix=_run_prefix("python"))
    (d / "python.jsonl").write_text(out.getvalue())
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = json.loads((d / "expected.json").read_text())
    assert len(got) == len(expected) == len(scenarios)
    problems = [f"scenario {w['index']} {w['name']}: {diff}"
                for w, g in zip(expected, got) for diff in scenario.differences(scenario.normalize(w),
                                                                                scenario.normalize(g))]
    if problems:
        pytest.fail("the Python client's answers differ from the server's:\n" + "\n".join(problems), pytrace=False)
    # the set covers what the contract promises
    codes = {e.get("error_code") for e in expected}
    assert {"INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "CLIENT_ERROR"} <= codes
    assert any(e.get("cold_start") for e in expected) and any(e.get("ineligible") for e in expected)
    assert any(c.get("reasons") for e in expected for c in e.get("ranked", []))
    statuses = {r["status"] for e in expected for r in e.get("results", [])}
    assert statuses == {"EVENT_STATUS_ACCEPTED", "EVENT_STATUS_DUPLICATE", "EVENT_STATUS_REJECTED"}
    after = next(e for e in expected if e["name"] == "events-recorded-redemption-reaches-the-limit")
    assert [c["reason"] for c in after["ineligible"]] == ["INELIGIBILITY_REASON_PER_USER_LIMIT_REACHED"]


def test_python_runner_command_line(contract):
    addr, d = contract
    run = subprocess.run([sys.executable, "-m", "couponrank.client.scenario", "-addr", addr, "-timeout", "20s",
                          "-event-id-prefix", _run_prefix("python-cli"), "-scenarios", str(d / "scenarios.json")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr  # some scenarios fail on purpose
    expected = json.loads((d / "expected.json").read_text())
    got = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(g["index"], g["name"], g["ok"], g.get("error_code")) for g in got] == [
        (e["index"], e["name"], e["ok"], e.get("error_code")) for e in expected]
    # its own events: accepted as new, not duplicates of the in-process or the library run's
    assert [g.get("results") for g in got if g["name"].startswith("events-")] == [
        e.get("results") for e in expected if e["name"].startswith("events-")]
    assert scenario.main(["-scenarios", str(d / "no-such-file.json")]) == 2


def _snippet(language: str) -> str:
    blocks = re.findall(rf"^```{language}\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    assert len(blocks) == 1, f"README.md should have exactly one ```{language} block (the client snippet)"
    return blocks[0]


def test_readme_python_snippet_runs(contract, tmp_path):
    addr, d = contract
    code = _snippet("python")
    compile(code, "README.md:python", "exec")
    (tmp_path / "snippet.py").write_text(code)
    run = subprocess.run([sys.executable, str(tmp_path / "snippet.py"), addr], capture_output=True, text=True,
                         timeout=60)
    (d / "readme-python.txt").write_text(run.stdout)
    assert run.returncode == 0, run.stderr
    assert "no coupons" not in run.stdout, run.stdout
    # no request_time: ranked at the contract server's (pinned) clock, best first, with reasons
    assert re.search(r"(?m)^1 c\S+ -?\d+\.\d{4} top reason: \w+$", run.stdout), run.stdout
    assert "nothing ranked" not in run.stdout, run.stdout

"""Caller identity and the right to see user features in explanations
(server/callers.py), on a real server over loopback; mTLS identity is in test_tls.py."""

from __future__ import annotations

import grpc
import numpy as np
import pandas as pd
import pytest

from couponrank.cli import main

from couponrank.features import request_features
from couponrank.server.callers import ANONYMOUS, Callers, CallersConfigError, token_hash
from server_fixtures import TRUSTED_TOKEN

pytest_plugins = ["server_fixtures"]  # built, server, target, client, trusted_client


def _private(server) -> set[str]:
    """Model features that describe the user's own behaviour."""
    return set(server.ranker.model.features) - set(server.ranker.online.public_features)


def _ask(built) -> dict:
    return dict(placement="cart", cart_total_minor=9999, cart_categories=["cat01"], explain=True, top_k=5,
                request_time=(built.last_snapshot + pd.Timedelta(hours=10)).to_pydatetime())


def _active_user(built) -> str:
    activity = pd.read_parquet(built.repo / "data" / "user_activity.parquet", columns=["user_id"])
    return str(activity.user_id.astype(str).value_counts().sort_index(kind="stable").idxmax())


def test_user_features_are_named_only_to_callers_with_the_right(built, server, client, trusted_client):
    private = _private(server)
    assert {"ctx_days_since_last_event", "ctx_days_since_last_order"} <= private  # from the user's activity
    assert any(f.startswith("user_") for f in private) and "ctx_cart_value" not in private
    user = _active_user(built)
    anonymous = client.rank_coupons(user, **_ask(built))
    trusted = trusted_client.rank_coupons(user, **_ask(built))
    assert [c.coupon_id for c in anonymous.ranked] == [c.coupon_id for c in trusted.ranked]  # same ranking
    shown = {r.feature for c in anonymous.ranked for r in c.reasons}
    assert shown and not shown & private
    assert {r.feature for c in trusted.ranked for r in c.reasons} & private  # they do matter to the score
    for a, t in zip(anonymous.ranked, trusted.ranked):  # the same contributions, the private ones left out
        assert [(r.feature, r.contribution) for r in a.reasons] == \
            [(r.feature, r.contribution) for r in t.reasons if r.feature not in private]


@pytest.mark.parametrize("metadata, message", [
    ((("authorization", "Bearer not-a-known-token"),), "matches no caller"),
    ((("authorization", "Basic dXNlcjpwYXNz"),), "expected \"Bearer <token>\""),
])
def test_a_bearer_token_that_names_nobody_is_unauthenticated(stub, metadata, message):
    from couponrank.v1 import coupon_ranking_service_pb2 as pb

    request = pb.RankCouponsRequest(user_id="u000001", context=pb.RequestContext(placement=pb.PLACEMENT_HOME))
    for call, req in ((stub.RankCoupons, request), (stub.GetModelInfo, pb.GetModelInfoRequest())):
        with pytest.raises(grpc.RpcError) as err:
            call(req, timeout=5, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and message in err.value.details()
        assert "not-a-known-token" not in err.value.details()


def test_the_rank_command_sends_a_token_from_a_file(built, target, tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text(TRUSTED_TOKEN + "\n")
    base = ["rank", "--addr", target, "--user", _active_user(built), "--placement", "home", "--explain",
            "--time", (built.last_snapshot + pd.Timedelta(hours=10)).isoformat()]
    assert main(base + ["--token-file", str(token)]) == 0
    assert "ranked:" in capsys.readouterr().out
    token.write_text("wrong-token")
    assert main(base + ["--token-file", str(token)]) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main(base + ["--token-file", str(tmp_path / "missing")]) == 2
    assert "missing: cannot read the token" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ('[callers.a]\nexplain = "all"\n', "[callers.a]: needs token_sha256 or certificate_name"),
    ('[callers.a]\ntoken_sha256 = "abc"\n', "[callers.a]: token_sha256 must be 64 lower-case hex digits"),
    ('[callers.a]\ncertificate_name = "x"\nexplain = "everything"\n', "[callers.a]: explain must be one of"),
    ('[callers.a]\ncertificate_name = "x"\ntoken = "plain"\n', "[callers.a]: unknown key(s) ['token']"),
    (f'[callers.a]\ntoken_sha256 = "{"0" * 64}"\n[callers.b]\ntoken_sha256 = "{"0" * 64}"\n',
     "[callers.b]: the same token_sha256 as [callers.a]"),
    ('[caller.a]\ncertificate_name = "x"\n', "unknown table(s) ['caller']"),
    ("[callers.a\n", "not valid TOML"),
])
def test_a_bad_callers_file_is_refused_naming_the_file_and_entry(tmp_path, text, message):
    path = tmp_path / "callers.toml"
    path.write_text(text)
    with pytest.raises(CallersConfigError) as err:
        Callers.load(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_serve_refuses_a_bad_callers_file_with_exit_2(built, tmp_path, capsys):
    missing = tmp_path / "callers.toml"
    assert main(["serve", "--repo", str(built.repo), "--model", str(built.models), "--port", "0",
                 "--callers", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: cannot read the callers file" in err and "Traceback" not in err


def test_identify_by_token_or_certificate_name_else_anonymous(tmp_path):
    path = tmp_path / "callers.toml"
    path.write_text(f'[callers.ds]\ntoken_sha256 = "{token_hash("t1")}"\nexplain = "all"\n'
                    '[callers.console]\ncertificate_name = "console.internal"\n')
    callers = Callers.load(path)
    assert callers.identify([("authorization", "Bearer t1")], {}).name == "ds"
    assert callers.identify([], {"x509_subject_alternative_name": [b"console.internal"]}).name == "console"
    assert callers.identify([], {"x509_common_name": [b"someone-else"]}) is ANONYMOUS
    assert not callers.identify([], {}).sees_user_features


def test_user_outputs_are_exactly_the_request_features_that_read_user_inputs():
    """request_features.USER_OUTPUTS decides what anonymous callers see: an output that
    reads the user's behaviour and is not listed would leak it."""
    n = 4
    base = {name: np.full(n, 1.0) for name in request_features.INPUTS}
    base.update(coupon_type=np.array(["percent_off"] * n, dtype=object), coupon_scope=np.array(["all"] * n, dtype=object),
                coupon_target_category=np.array(["cat01"] * n, dtype=object),
                cart_categories=np.array(["cat01"] * n, dtype=object), placement=np.array(["cart"] * n, dtype=object),
                request_ts_unix=np.full(n, 1.8e9))
    user_inputs = [k for k, src in request_features.INPUTS.items() if src not in ("request", "coupon_attributes")]
    before = request_features.compute(base)
    changed = request_features.compute({**base, **{k: np.full(n, 1.5e9) for k in user_inputs}})
    reads_user = {k for k in before if not np.array_equal(before[k], changed[k], equal_nan=True)}
    assert reads_user == set(request_features.USER_OUTPUTS)

"""TLS and mutual TLS on a real server over loopback, with certificates made here by
openssl (a test CA, a server certificate for 127.0.0.1 / localhost, a client one)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from couponrank.cli import main
from couponrank.client import CouponRankClient, CouponRankError, tls_credentials
from couponrank.server.main import TlsConfigError, serve
from couponrank.server.service import ServerConfig
from pinned import UNIX_CLOCK

pytestmark = pytest.mark.slow
pytest_plugins = ["server_fixtures"]  # built


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=test-ca",
             cwd=d)
    for name, extra in (("server", ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]), ("client", [])):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=test-{name}", *extra,
                 cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "3650", "-copy_extensions", "copyall", cwd=d)
    # a CA the server does not trust, with a client certificate of its own
    _openssl("req", "-x509", *ec, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "3650", "-subj",
             "/CN=other-ca", cwd=d)
    _openssl("req", *ec, "-keyout", "stranger.key", "-out", "stranger.csr", "-subj", "/CN=stranger", cwd=d)
    _openssl("x509", "-req", "-in", "stranger.csr", "-CA", "other-ca.pem", "-CAkey", "other-ca.key",
             "-CAcreateserial", "-out", "stranger.pem", "-days", "3650", cwd=d)
    return d


def _rank(target: str, credentials=None):
    with CouponRankClient(target, timeout=5.0, max_attempts=1, credentials=credentials) as c:
        return c.rank_coupons("u000001", placement="home")


def test_tls_server_answers_tls_clients_only(built, pki):
    config = ServerConfig(tls_cert=str(pki / "server.pem"), tls_key=str(pki / "server.key"))
    running = serve(built.repo, built.models, port=0, config=config, clock=UNIX_CLOCK)
    target = f"127.0.0.1:{running.port}"
    try:
        assert _rank(target, tls_credentials(str(pki / "ca.pem"))).ranked
        with pytest.raises(CouponRankError) as plain:
            _rank(target)
        assert plain.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(CouponRankError) as untrusted:  # the server's certificate is not signed by this CA
            _rank(target, tls_credentials(str(pki / "other-ca.pem")))
        assert untrusted.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0).wait(5)


def test_mutual_tls_admits_only_clients_signed_by_the_ca(built, pki, capsys):
    config = ServerConfig(tls_cert=str(pki / "server.pem"), tls_key=str(pki / "server.key"),
                          tls_client_ca=str(pki / "ca.pem"))
    running = serve(built.repo, built.models, port=0, config=config, clock=UNIX_CLOCK)
    target = f"127.0.0.1:{running.port}"
    ca = str(pki / "ca.pem")
    try:
        assert _rank(target, tls_credentials(ca, str(pki / "client.pem"), str(pki / "client.key"))).ranked
        for creds in (tls_credentials(ca), tls_credentials(ca, str(pki / "stranger.pem"), str(pki / "stranger.key"))):
            with pytest.raises(CouponRankError) as refused:
                _rank(target, creds)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        # the rank command with the same options
        assert main(["rank", "--addr", target, "--user", "u000001", "--placement", "home", "--tls-ca", ca,
                     "--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]) == 0
        assert "ranked:" in capsys.readouterr().out
    finally:
        running.stop(0).wait(5)


def test_bad_tls_options_are_refused_naming_the_file(built, pki, tmp_path, capsys):
    with pytest.raises(TlsConfigError, match="--tls-key"):
        serve(built.repo, built.models, port=0, config=ServerConfig(tls_cert=str(pki / "server.pem")))
    (tmp_path / "bad.pem").write_text("not a certificate")
    for cert, key, name in ((tmp_path / "missing.pem", pki / "server.key", "missing.pem"),
                            (tmp_path / "bad.pem", pki / "server.key", "bad.pem")):
        assert main(["serve", "--quiet", "--repo", str(built.repo), "--model", str(built.models), "--port", "0",
                     "--tls-cert", str(cert), "--tls-key", str(key)]) == 2
        err = capsys.readouterr().err
        assert name in err and "server not started" in err and "Traceback" not in err


def test_a_client_certificate_names_the_caller_and_its_rights(built, pki, tmp_path):
    """mTLS identity (server/callers.py): the certificate's common name picks the
    caller entry; only a caller with explain = "all" sees the user's features."""
    import pandas as pd

    from couponrank.server.callers import Callers

    callers = tmp_path / "callers.toml"
    callers.write_text('[callers.console]\ncertificate_name = "test-client"\nexplain = "all"\n')
    config = ServerConfig(tls_cert=str(pki / "server.pem"), tls_key=str(pki / "server.key"),
                          tls_client_ca=str(pki / "ca.pem"), callers_file=str(callers), max_reasons=0)
    running = serve(built.repo, built.models, port=0, config=config, clock=UNIX_CLOCK)
    private = set(running.ranker.model.features) - set(running.ranker.online.public_features)
    creds = tls_credentials(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
    at = (built.last_snapshot + pd.Timedelta(hours=10)).to_pydatetime()

    def shown() -> set[str]:
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=5.0, credentials=creds) as c:
            result = c.rank_coupons("u000001", placement="home", explain=True, top_k=5, request_time=at)
        return {r.feature for coupon in result.ranked for r in coupon.reasons}

    try:
        assert shown() & private
        callers.write_text('[callers.console]\ncertificate_name = "another-client"\nexplain = "all"\n')
        running.servicer.callers = Callers.load(callers)
        assert shown() and not shown() & private
    finally:
        running.stop(0).wait(5)

package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.testing.FakeCouponRankServer;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS and mutual TLS against a real Netty server (FakeCouponRankServer) with certificates made by
 * openssl for this run (TestCerts).
 */
@Timeout(60)
class TlsTest {

  @TempDir static Path dir;
  static TestCerts certs;

  @BeforeAll
  static void makeCertificates() throws Exception {
    certs = TestCerts.create(dir);
  }

  private static RankCouponsRequest request() {
    return RankCouponsRequest.newBuilder().setRequestId("r-tls").setUserId("u-1").addCandidateCouponIds("c1").build();
  }

  /** A builder with generous limits: the first TLS call also loads the TLS classes. */
  private static CouponRankClient.Builder tlsClient(FakeCouponRankServer server) {
    return server.clientBuilder().defaultDeadline(Duration.ofSeconds(20)).maxAttempts(1);
  }

  private static FakeCouponRankServer tlsServer() throws Exception {
    return FakeCouponRankServer.newBuilder().tls(certs.serverCert, certs.serverKey).start();
  }

  private static FakeCouponRankServer mtlsServer() throws Exception {
    return FakeCouponRankServer.newBuilder()
        .tls(certs.serverCert, certs.serverKey)
        .requireClientCertificates(certs.caCert)
        .start();
  }

  @Test
  void tlsWithCustomCaAndAuthority() throws Exception {
    try (FakeCouponRankServer server = tlsServer();
        CouponRankClient client =
            tlsClient(server)
                .trustCertificates(certs.caCert)
                .overrideAuthority(TestCerts.SERVER_NAME)
                .build()) {
      RankCouponsResponse res = client.rankCoupons(request());
      assertEquals("c1", res.getRankedCoupons(0).getCouponId());
      assertEquals("r-tls", res.getRequestId());
      assertEquals(1, server.rankCouponsCalls());
      assertEquals(TestCerts.SERVER_NAME, server.calls().get(0).authority());
    }
  }

  @Test
  void wrongCaFailsWithUnavailable() throws Exception {
    try (FakeCouponRankServer server = tlsServer();
        CouponRankClient client =
            tlsClient(server)
                .trustCertificates(certs.otherCaCert)
                .overrideAuthority(TestCerts.SERVER_NAME)
                .build()) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.toString());
      assertEquals(0, server.rankCouponsCalls());
    }
  }

  @Test
  void wrongServerNameFailsWithUnavailable() throws Exception {
    // The certificate names couponrank.test only; the target is 127.0.0.1.
    try (FakeCouponRankServer server = tlsServer();
        CouponRankClient client = tlsClient(server).trustCertificates(certs.caCert).build()) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.toString());
      assertEquals(0, server.rankCouponsCalls());
    }
  }

  @Test
  void bearerTokenOverTls() throws Exception {
    try (FakeCouponRankServer server = tlsServer();
        CouponRankClient client =
            tlsClient(server)
                .trustCertificates(certs.caCert)
                .overrideAuthority(TestCerts.SERVER_NAME)
                .bearerToken("tls-token_1")
                .build()) {
      client.rankCoupons(request());
      assertEquals(1, server.rankCouponsCalls());
      assertEquals(
          java.util.List.of("Bearer tls-token_1"),
          BearerTokenTest.authorizations(server.calls().get(0).headers()));
    }
  }

  @Test
  void mutualTls() throws Exception {
    try (FakeCouponRankServer server = mtlsServer();
        CouponRankClient client =
            tlsClient(server)
                .trustCertificates(certs.caCert)
                .clientCertificate(certs.clientCert, certs.clientKey)
                .overrideAuthority(TestCerts.SERVER_NAME)
                .build()) {
      assertEquals("c1", client.rankCoupons(request()).getRankedCoupons(0).getCouponId());
      assertEquals(1, server.rankCouponsCalls());
    }
  }

  @Test
  void mutualTlsServerRefusesAClientWithoutCertificate() throws Exception {
    try (FakeCouponRankServer server = mtlsServer();
        CouponRankClient client =
            tlsClient(server)
                .trustCertificates(certs.caCert)
                .overrideAuthority(TestCerts.SERVER_NAME)
                .build()) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.toString());
      assertEquals(0, server.rankCouponsCalls());
      // Fail-open callers get an empty ranking instead.
      FailOpenResult r = client.rankOrEmpty(request());
      assertEquals(0, r.response().getRankedCouponsCount());
      assertEquals(Status.Code.UNAVAILABLE, r.status().getCode());
    }
  }

  // ---- build-time errors name the file ---------------------------------------------------

  private static CouponRankClient.Builder builder() {
    return CouponRankClient.newBuilder().target("127.0.0.1:1");
  }

  private static void assertBuildFails(CouponRankClient.Builder b, String... mustMention) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, b::build);
    for (String s : mustMention) {
      assertTrue(e.getMessage().contains(s), "message \"" + e.getMessage() + "\" should mention " + s);
    }
  }

  @Test
  void missingFilesAreNamed() {
    Path missing = dir.resolve("no-such-ca.pem");
    assertBuildFails(builder().trustCertificates(missing), "trustCertificates", missing.toString());
    Path missingKey = dir.resolve("no-such.key");
    assertBuildFails(
        builder().clientCertificate(certs.clientCert, missingKey), "clientCertificate", missingKey.toString());
  }

  @Test
  void invalidFilesAreNamed() throws Exception {
    Path garbage = Files.writeString(dir.resolve("garbage.pem"), "not a certificate\n");
    assertBuildFails(builder().trustCertificates(garbage), garbage.toString());
    // A key where the certificate belongs, and a certificate where the key belongs.
    assertBuildFails(builder().trustCertificates(certs.caKey), certs.caKey.toString());
    assertBuildFails(
        builder().clientCertificate(certs.clientCert, certs.clientCert), certs.clientCert.toString(), "no PEM private key");
    // Another certificate's key.
    assertBuildFails(
        builder().clientCertificate(certs.clientCert, certs.serverKey),
        certs.serverKey.toString(), certs.clientCert.toString(), "does not match");
    // A traditional (SEC1) EC key: not PKCS#8.
    Path sec1 = dir.resolve("client-sec1.key");
    certs.openssl("ec", "-in", certs.clientKey.toString(), "-out", sec1.toString()); // writes "BEGIN EC PRIVATE KEY"
    assertBuildFails(builder().clientCertificate(certs.clientCert, sec1), sec1.toString(), "PKCS#8");
  }

  @Test
  void contradictoryOptionsAreRejected() {
    assertBuildFails(builder().trustCertificates(certs.caCert).usePlaintext(true), "usePlaintext");
    io.grpc.ManagedChannel ch = io.grpc.ManagedChannelBuilder.forTarget("127.0.0.1:1").usePlaintext().build();
    try {
      assertBuildFails(CouponRankClient.newBuilder().channel(ch).trustCertificates(certs.caCert), "channel");
      assertBuildFails(CouponRankClient.newBuilder().channel(ch).overrideAuthority("x"), "channel");
    } finally {
      ch.shutdownNow();
    }
    assertBuildFails(builder().overrideAuthority(""), "overrideAuthority");
  }

  @Test
  void tlsOptionsBuildAClient() {
    try (CouponRankClient c =
        builder()
            .trustCertificates(certs.caCert)
            .clientCertificate(certs.clientCert, certs.clientKey)
            .overrideAuthority(TestCerts.SERVER_NAME)
            .build()) {
      assertEquals(CouponRankClient.DEFAULT_MAX_ATTEMPTS, c.maxAttempts());
    }
  }
}

package com.couponrank.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Test certificates made by the {@code openssl} command-line tool (installed by
 * scripts/setup.sh): a CA, a server certificate it signed for {@link #SERVER_NAME} only, a client
 * certificate it signed, and an unrelated second CA. EC P-256 keys in unencrypted PKCS#8, validity
 * from now for two days, so they are valid whenever the tests run.
 */
final class TestCerts {

  /** The only name in the server certificate: clients must override the authority to it. */
  static final String SERVER_NAME = "couponrank.test";

  final Path dir;
  final Path caCert;
  final Path caKey;
  final Path serverCert;
  final Path serverKey;
  final Path clientCert;
  final Path clientKey;
  final Path otherCaCert;

  private TestCerts(Path dir) {
    this.dir = dir;
    this.caCert = dir.resolve("ca.pem");
    this.caKey = dir.resolve("ca.key");
    this.serverCert = dir.resolve("server.pem");
    this.serverKey = dir.resolve("server.key");
    this.clientCert = dir.resolve("client.pem");
    this.clientKey = dir.resolve("client.key");
    this.otherCaCert = dir.resolve("other-ca.pem");
  }

  /** Writes the certificates and keys into {@code dir}. */
  static TestCerts create(Path dir) throws IOException, InterruptedException {
    TestCerts c = new TestCerts(dir);
    Path cnf = dir.resolve("openssl.cnf");
    Files.writeString(
        cnf,
        String.join(
            "\n",
            "[req]",
            "distinguished_name = dn",
            "prompt = no",
            "[dn]",
            "CN = unused",
            "[ca_ext]",
            "basicConstraints = critical,CA:TRUE",
            "keyUsage = critical,keyCertSign,cRLSign",
            "subjectKeyIdentifier = hash",
            "[server_ext]",
            "basicConstraints = CA:FALSE",
            "keyUsage = critical,digitalSignature",
            "extendedKeyUsage = serverAuth",
            "subjectAltName = DNS:" + SERVER_NAME,
            "[client_ext]",
            "basicConstraints = CA:FALSE",
            "keyUsage = critical,digitalSignature",
            "extendedKeyUsage = clientAuth",
            ""));
    c.selfSignedCa(cnf, "ca", "/CN=CouponRank Test CA");
    c.selfSignedCa(cnf, "other-ca", "/CN=Some Other CA");
    c.leaf(cnf, "server", "/CN=" + SERVER_NAME, "server_ext", "1001");
    c.leaf(cnf, "client", "/CN=checkout-service", "client_ext", "1002");
    return c;
  }

  private void selfSignedCa(Path cnf, String name, String subject) throws IOException, InterruptedException {
    openssl(
        "req", "-x509", "-config", cnf.toString(), "-extensions", "ca_ext",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", subject);
  }

  private void leaf(Path cnf, String name, String subject, String ext, String serial)
      throws IOException, InterruptedException {
    openssl(
        "req", "-new", "-config", cnf.toString(),
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".csr", "-subj", subject);
    openssl(
        "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", serial, "-days", "2", "-extfile", cnf.toString(), "-extensions", ext,
        "-out", name + ".pem");
  }

  /** Runs openssl in {@link #dir}; fails with its output when it exits non-zero. */
  void openssl(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add("openssl");
    cmd.addAll(List.of(args));
    Process p;
    try {
      p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
    } catch (IOException e) {
      throw new IOException("cannot run openssl (scripts/setup.sh installs it): " + e.getMessage(), e);
    }
    p.getOutputStream().close();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    int rc = p.waitFor();
    if (rc != 0) {
      throw new IOException(String.join(" ", cmd) + " exited with " + rc + ":\n" + out);
    }
  }
}

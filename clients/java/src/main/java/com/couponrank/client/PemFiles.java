package com.couponrank.client;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads and checks the PEM files of the client's TLS options when the client is built, so a
 * missing or malformed file fails there, naming the file, rather than at the first call.
 */
final class PemFiles {

  private static final Pattern PEM_BLOCK =
      Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----\\s*([A-Za-z0-9+/=\\s]*?)-----END \\1-----");

  private PemFiles() {}

  /** A file's bytes; {@code what} names the option in the error. */
  static byte[] read(String what, Path file) {
    try {
      return Files.readAllBytes(file);
    } catch (IOException | RuntimeException e) {
      throw new IllegalArgumentException(what + ": cannot read " + file + ": " + e, e);
    }
  }

  /** The X.509 certificates of a PEM file, at least one. */
  static List<X509Certificate> certificates(String what, Path file, byte[] pem) {
    Collection<? extends Certificate> certs;
    try {
      certs = CertificateFactory.getInstance("X.509").generateCertificates(new ByteArrayInputStream(pem));
    } catch (CertificateException | RuntimeException e) {
      throw new IllegalArgumentException(
          what + ": " + file + " is not a PEM file of X.509 certificates: " + e.getMessage(), e);
    }
    List<X509Certificate> out = new ArrayList<>();
    for (Certificate c : certs) {
      out.add((X509Certificate) c);
    }
    if (out.isEmpty()) {
      throw new IllegalArgumentException(what + ": " + file + " holds no PEM certificate");
    }
    return out;
  }

  /** The unencrypted PKCS#8 private key ("BEGIN PRIVATE KEY": RSA, EC or DSA) of a PEM file. */
  static PrivateKey privateKey(String what, Path file, byte[] pem) {
    Matcher m = PEM_BLOCK.matcher(new String(pem, StandardCharsets.US_ASCII));
    while (m.find()) {
      String type = m.group(1);
      if (type.equals("PRIVATE KEY")) {
        byte[] der;
        try {
          der = Base64.getMimeDecoder().decode(m.group(2));
        } catch (IllegalArgumentException e) {
          throw new IllegalArgumentException(what + ": " + file + ": bad base64 in the private key", e);
        }
        for (String alg : new String[] {"RSA", "EC", "DSA"}) {
          try {
            return KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(der));
          } catch (GeneralSecurityException e) {
            // try the next algorithm
          }
        }
        throw new IllegalArgumentException(
            what + ": " + file + ": the PKCS#8 private key is not an RSA, EC or DSA key");
      }
      if (type.endsWith("PRIVATE KEY")) { // RSA PRIVATE KEY, EC PRIVATE KEY, ENCRYPTED PRIVATE KEY
        throw new IllegalArgumentException(
            what + ": " + file + " holds a \"" + type + "\"; want an unencrypted PKCS#8 key"
                + " (\"BEGIN PRIVATE KEY\"): convert it with"
                + " openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8");
      }
    }
    throw new IllegalArgumentException(what + ": " + file + " holds no PEM private key");
  }

  /** Throws unless {@code key} is the private key of {@code cert}. */
  static void checkKeyMatches(String what, Path certFile, X509Certificate cert, Path keyFile, PrivateKey key) {
    PublicKey pub = cert.getPublicKey();
    if (!pub.getAlgorithm().equals(key.getAlgorithm())) {
      throw new IllegalArgumentException(
          what + ": the private key in " + keyFile + " (" + key.getAlgorithm()
              + ") does not match the certificate in " + certFile + " (" + pub.getAlgorithm() + ")");
    }
    String alg =
        switch (key.getAlgorithm()) {
          case "RSA" -> "SHA256withRSA";
          case "EC" -> "SHA256withECDSA";
          case "DSA" -> "SHA256withDSA";
          default -> null;
        };
    if (alg == null) {
      return;
    }
    boolean ok;
    try {
      byte[] probe = "couponrank key check".getBytes(StandardCharsets.US_ASCII);
      Signature signer = Signature.getInstance(alg);
      signer.initSign(key);
      signer.update(probe);
      byte[] signature = signer.sign();
      Signature verifier = Signature.getInstance(alg);
      verifier.initVerify(pub);
      verifier.update(probe);
      ok = verifier.verify(signature);
    } catch (GeneralSecurityException e) {
      ok = false;
    }
    if (!ok) {
      throw new IllegalArgumentException(
          what + ": the private key in " + keyFile + " does not match the certificate in " + certFile);
    }
  }
}

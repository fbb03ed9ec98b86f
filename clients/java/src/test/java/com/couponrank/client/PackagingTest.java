package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** What the jar ships besides classes, and the version the README states. */
class PackagingTest {

  @Test
  void protoIsOnTheClassPath() throws Exception {
    String proto;
    try (InputStream in =
        CouponRankClient.class.getClassLoader().getResourceAsStream("couponrank/v1/coupon_ranking_service.proto")) {
      assertNotNull(in, "couponrank/v1/coupon_ranking_service.proto is not on the class path");
      proto = new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
    assertTrue(Pattern.compile("(?m)^package couponrank\\.v1;").matcher(proto).find(), "no `package couponrank.v1;`");
    assertTrue(proto.contains("service CouponRankingService"));
  }

  @Test
  void versionIsAReleaseAndTheReadmeStatesIt() throws Exception {
    String pom = Files.readString(Path.of("pom.xml"));
    Matcher m =
        Pattern.compile("<artifactId>couponrank-client</artifactId>\\s*(?:<!--.*?-->\\s*)?<version>([^<]+)</version>", Pattern.DOTALL)
            .matcher(pom);
    assertTrue(m.find(), "no project version in pom.xml");
    String version = m.group(1);
    assertTrue(version.matches("\\d+\\.\\d+\\.\\d+"), "version " + version + " is not MAJOR.MINOR.PATCH");
    assertFalse(version.contains("SNAPSHOT"));
    for (Path doc : new Path[] {Path.of("README.md"), Path.of("../../README.md")}) {
      String readme = Files.readString(doc);
      assertTrue(
          readme.contains("<version>" + version + "</version>"),
          doc + "'s dependency snippet should name version " + version);
    }
  }
}

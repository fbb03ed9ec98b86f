package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The root README's Java snippet compiles against this client (javac, the test class path) and,
 * when scripts/test.sh runs a contract server, runs against it and prints at least one ranked
 * coupon ({@code 1 COUPON_ID SCORE ...}). Every Java snippet of this client's README.md compiles
 * too, and those that name no {@code .target(} (fake server, conversions) also run.
 */
@Timeout(120)
class ReadmeSnippetTest {

  @Test
  void readmeJavaSnippetCompilesAndRuns(@TempDir Path tmp) throws Exception {
    String readme = Files.readString(Path.of("..", "..", "README.md"));
    Matcher blocks = Pattern.compile("(?ms)^```java\n(.*?)^```").matcher(readme);
    assertTrue(blocks.find(), "README.md has no ```java block (the client snippet)");
    String code = blocks.group(1);
    assertFalse(blocks.find(), "README.md should have exactly one ```java block (the client snippet)");
    Matcher cls = Pattern.compile("public\\s+(?:final\\s+)?class\\s+(\\w+)").matcher(code);
    assertTrue(cls.find(), "the README's Java snippet declares no public class");
    String className = cls.group(1);

    Path src = tmp.resolve(className + ".java");
    Files.writeString(src, code);
    Path classes = Files.createDirectories(tmp.resolve("classes"));
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    assertNotNull(javac, "no Java compiler in this JVM (need a JDK)");
    // Surefire's java.class.path may be a manifest-only jar; it gives the real one here.
    String classPath =
        System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    ByteArrayOutputStream diagnostics = new ByteArrayOutputStream();
    int rc =
        javac.run(
            null, diagnostics, diagnostics,
            "-Xlint:all", "-classpath", classPath, "-d", classes.toString(), src.toString());
    assertEquals(0, rc, "javac on the README's Java snippet:\n" + diagnostics);

    Map.Entry<String, Path> server = ContractTest.contractServer(); // skips from here without one
    ByteArrayOutputStream printed = new ByteArrayOutputStream();
    PrintStream stdout = System.out;
    try (URLClassLoader loader =
        new URLClassLoader(new URL[] {classes.toUri().toURL()}, getClass().getClassLoader())) {
      Method main = loader.loadClass(className).getMethod("main", String[].class);
      System.setOut(new PrintStream(printed, true, StandardCharsets.UTF_8));
      main.invoke(null, (Object) new String[] {server.getKey()});
    } finally {
      System.setOut(stdout);
    }
    String out = printed.toString(StandardCharsets.UTF_8);
    Files.writeString(server.getValue().resolve("readme-java.txt"), out);
    assertFalse(out.contains("no coupons"), "the README's Java snippet got an error:\n" + out);
    // The snippet names no candidates and sends no request time: the server ranks every coupon
    // active at its current time (the contract server's clock is pinned where coupons are).
    assertTrue(
        Pattern.compile("(?m)^1 c\\S+ ").matcher(out).find(),
        "the README's Java snippet ranked no coupon:\n" + out);
  }

  /** What a snippet of clients/java/README.md may use without importing it. */
  private static final String SNIPPET_IMPORTS =
      String.join(
          "\n",
          "import static org.junit.jupiter.api.Assertions.*;",
          "import com.couponrank.client.*;",
          "import com.couponrank.client.testing.*;",
          "import com.couponrank.v1.*;",
          "import com.google.protobuf.Timestamp;",
          "import io.grpc.Status;",
          "import io.grpc.StatusRuntimeException;",
          "import java.math.BigDecimal;",
          "import java.nio.file.Path;",
          "import java.time.*;",
          "import java.util.*;",
          "import java.util.concurrent.CompletableFuture;",
          "");

  @Test
  void clientReadmeSnippetsCompileAndLocalOnesRun(@TempDir Path tmp) throws Exception {
    String readme = Files.readString(Path.of("README.md"));
    Matcher blocks = Pattern.compile("(?ms)^```java\n(.*?)^```").matcher(readme);
    List<String> sources = new ArrayList<>();
    List<String> runnable = new ArrayList<>();
    for (int i = 0; blocks.find(); i++) {
      String name = "ClientReadmeSnippet" + i;
      Path src = tmp.resolve(name + ".java");
      Files.writeString(
          src,
          SNIPPET_IMPORTS + "public class " + name + " {\n  public void run() throws Exception {\n"
              + blocks.group(1) + "  }\n}\n");
      sources.add(src.toString());
      if (!blocks.group(1).contains(".target(")) {
        runnable.add(name);
      }
    }
    assertTrue(sources.size() >= 4, "clients/java/README.md should have its Java snippets; found " + sources.size());
    Path classes = Files.createDirectories(tmp.resolve("classes"));
    List<String> args =
        new ArrayList<>(
            List.of(
                "-classpath",
                System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")),
                "-d",
                classes.toString()));
    args.addAll(sources);
    ByteArrayOutputStream diagnostics = new ByteArrayOutputStream();
    int rc = ToolProvider.getSystemJavaCompiler().run(null, diagnostics, diagnostics, args.toArray(new String[0]));
    assertEquals(0, rc, "javac on clients/java/README.md's Java snippets:\n" + diagnostics);
    assertTrue(runnable.size() >= 2, "expected the fake-server and conversion snippets to run: " + runnable);
    try (URLClassLoader loader =
        new URLClassLoader(new URL[] {classes.toUri().toURL()}, getClass().getClassLoader())) {
      for (String name : runnable) {
        Class<?> c = loader.loadClass(name);
        c.getMethod("run").invoke(c.getConstructor().newInstance());
      }
    }
  }
}

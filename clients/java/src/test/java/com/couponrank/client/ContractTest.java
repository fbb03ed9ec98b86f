package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.io.Reader;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Cross-language contract, Java side: the scenarios written by {@code scripts/contract_server.py},
 * run with {@link CouponRankClient} against the live server it starts, must give the answers the
 * same server computed in process. The lines go to {@code DIR/java.jsonl}, which {@code
 * scripts/contract_check.py} compares with the Python and Go ones. {@code scripts/test.sh} starts
 * the server and sets {@code COUPONRANK_CONTRACT_ADDR} and {@code COUPONRANK_CONTRACT_DIR};
 * without them the test is skipped. The events scenarios record events: a second run against the
 * same server is answered DUPLICATE (restart the server, which starts a new event log).
 */
@Timeout(120)
class ContractTest {

  static final double REL_TOLERANCE = 1e-9;
  /**
   * In front of the event ids this run sends (and taken off those answered): the server answered
   * the expectations under its own prefix and the Python and Go runs use theirs, so each run
   * records its own events and gets the same answers.
   */
  static final String EVENT_ID_PREFIX = "java/";
  static final String NO_SERVER =
      "no contract server: run scripts/test.sh from the repository root (it starts one and sets"
          + " COUPONRANK_CONTRACT_ADDR and COUPONRANK_CONTRACT_DIR)";

  /** The contract server's address and directory; skips the test when there is none. */
  static Map.Entry<String, Path> contractServer() {
    String addr = System.getenv("COUPONRANK_CONTRACT_ADDR");
    String dir = System.getenv("COUPONRANK_CONTRACT_DIR");
    assumeTrue(addr != null && !addr.isEmpty() && dir != null && !dir.isEmpty(), NO_SERVER);
    return Map.entry(addr, Path.of(dir));
  }

  @Test
  void javaClientAnswersMatchTheServer() throws Exception {
    Map.Entry<String, Path> server = contractServer();
    Path dir = server.getValue();
    List<ScenarioRunner.Scenario> scenarios;
    try (Reader in = Files.newBufferedReader(dir.resolve("scenarios.json"))) {
      scenarios = ScenarioRunner.parse(in);
    }
    StringWriter out = new StringWriter();
    try (CouponRankClient client =
        CouponRankClient.newBuilder()
            .target(server.getKey())
            .defaultDeadline(Duration.ofSeconds(20))
            .build()) {
      assertTrue(
          client.awaitReady(Duration.ofSeconds(30)),
          "cannot connect to the contract server at " + server.getKey());
      client.getModelInfo(); // warm-up, as the Example does: class loading stays out of deadlines
      ScenarioRunner.runAll(client, scenarios, out, EVENT_ID_PREFIX);
    }
    Files.writeString(dir.resolve("java.jsonl"), out.toString());

    JsonArray expected =
        JsonParser.parseString(Files.readString(dir.resolve("expected.json"))).getAsJsonArray();
    List<String> lines = out.toString().lines().toList();
    assertEquals(scenarios.size(), expected.size(), "scenarios vs expected answers");
    assertEquals(expected.size(), lines.size(), "expected answers vs output lines");
    List<String> problems = new ArrayList<>();
    for (int i = 0; i < lines.size(); i++) {
      JsonElement want = normalize(expected.get(i));
      String name = want.getAsJsonObject().get("name").getAsString();
      for (String d : differences(want, normalize(JsonParser.parseString(lines.get(i))), "")) {
        problems.add("scenario " + i + " " + name + ": " + d);
      }
    }
    assertTrue(problems.isEmpty(), String.join("\n", problems));
  }

  /**
   * A line as the contract compares it: an error keeps its code and, for INVALID_ARGUMENT, the
   * field its message starts with ({@code "user_id: must not be empty"} -> {@code user_id});
   * other messages are dropped, as each gRPC implementation words its own. An expectation may give
   * {@code error_field} instead of a message. Same rules as couponrank.client.scenario.normalize.
   */
  static JsonElement normalize(JsonElement line) {
    JsonObject out = line.getAsJsonObject().deepCopy();
    if (out.has("ok") && out.get("ok").getAsBoolean()) {
      return out;
    }
    JsonElement message = out.remove("error_message");
    JsonElement field = out.remove("error_field");
    if (out.has("error_code") && "INVALID_ARGUMENT".equals(out.get("error_code").getAsString())) {
      if (field == null) {
        String m = message == null || message.isJsonNull() ? "" : message.getAsString();
        int colon = m.indexOf(':');
        field = new JsonPrimitive(colon < 0 ? m : m.substring(0, colon));
      }
      out.add("error_field", field);
    }
    return out;
  }

  /** Where two JSON values differ: numbers within REL_TOLERANCE, everything else exactly. */
  static List<String> differences(JsonElement want, JsonElement got, String path) {
    List<String> out = new ArrayList<>();
    String here = path.isEmpty() ? "." : path;
    if (want.isJsonObject() && got.isJsonObject()) {
      JsonObject w = want.getAsJsonObject();
      JsonObject g = got.getAsJsonObject();
      for (String k : new TreeSet<>(w.keySet())) {
        if (!g.has(k)) {
          out.add(path + "." + k + ": missing");
        } else {
          out.addAll(differences(w.get(k), g.get(k), path + "." + k));
        }
      }
      for (String k : new TreeSet<>(g.keySet())) {
        if (!w.has(k)) {
          out.add(path + "." + k + ": unexpected " + g.get(k));
        }
      }
    } else if (want.isJsonArray() && got.isJsonArray() && want.getAsJsonArray().size() == got.getAsJsonArray().size()) {
      JsonArray w = want.getAsJsonArray();
      JsonArray g = got.getAsJsonArray();
      for (int i = 0; i < w.size(); i++) {
        out.addAll(differences(w.get(i), g.get(i), path + "[" + i + "]"));
      }
    } else if (isNumber(want) && isNumber(got)) {
      double w = want.getAsDouble();
      double g = got.getAsDouble();
      if (!(w == g || Math.abs(w - g) <= REL_TOLERANCE * Math.max(Math.abs(w), Math.abs(g)))) {
        out.add(here + ": want " + want + ", got " + got);
      }
    } else if (!want.equals(got)) { // strings, booleans, null; or different kinds
      out.add(here + ": want " + want + ", got " + got);
    }
    return out;
  }

  private static boolean isNumber(JsonElement e) {
    return e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber();
  }

  @Test
  void differencesCompareParsedJson() {
    String[][] cases = {
      {"{\"a\":[1,0.5,null,true,\"x\"]}", "{\"a\":[1.0,0.5000000000001,null,true,\"x\"]}", "0"},
      {"{\"a\":1}", "{\"a\":1.001}", "1"},
      {"{\"a\":true}", "{\"a\":1}", "1"},
      {"{\"a\":[1]}", "{\"a\":[1],\"b\":2}", "1"},
      {"{\"a\":[1]}", "{\"a\":[1,2]}", "1"},
      {
        "{\"ok\":false,\"error_code\":\"INVALID_ARGUMENT\",\"error_field\":\"user_id\"}",
        "{\"ok\":false,\"error_code\":\"INVALID_ARGUMENT\",\"error_message\":\"user_id: must not be empty\"}",
        "0"
      },
      {
        "{\"ok\":false,\"error_code\":\"INVALID_ARGUMENT\",\"error_field\":\"user_id\"}",
        "{\"ok\":false,\"error_code\":\"INVALID_ARGUMENT\",\"error_message\":\"top_k: must not be negative\"}",
        "1"
      },
      {
        "{\"ok\":false,\"error_code\":\"DEADLINE_EXCEEDED\"}",
        "{\"ok\":false,\"error_code\":\"DEADLINE_EXCEEDED\",\"error_message\":\"deadline exceeded after 0.001s\"}",
        "0"
      },
    };
    for (String[] c : cases) {
      List<String> d =
          differences(
              normalize(JsonParser.parseString(c[0])), normalize(JsonParser.parseString(c[1])), "");
      assertEquals(Integer.parseInt(c[2]), d.size(), c[0] + " vs " + c[1] + ": " + d);
    }
  }
}

package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/internal/scenario"
)

// relTolerance is how far apart two numbers may be, relative to the larger.
const relTolerance = 1e-9

// eventIDPrefix goes in front of the event ids the Go run sends, so that its
// events are its own on a server the other languages' runs use too (a second
// run against the same server gets EVENT_STATUS_DUPLICATE answers: restart the
// server to run again).
const eventIDPrefix = "go/"

// contractServer returns the contract server's address and directory, or
// skips the test when scripts/test.sh did not start one.
func contractServer(t *testing.T) (addr, dir string) {
	t.Helper()
	addr, dir = os.Getenv("COUPONRANK_CONTRACT_ADDR"), os.Getenv("COUPONRANK_CONTRACT_DIR")
	if addr == "" || dir == "" {
		t.Skip("no contract server: run scripts/test.sh from the repository root (it starts one and sets " +
			"COUPONRANK_CONTRACT_ADDR and COUPONRANK_CONTRACT_DIR)")
	}
	return addr, dir
}

func TestGoClientAnswersMatchTheServer(t *testing.T) {
	addr, dir := contractServer(t)
	f, err := os.Open(filepath.Join(dir, "scenarios.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	list, err := scenario.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	client, err := couponrank.Dial(addr, couponrank.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := client.WaitForReady(wctx); err != nil {
		t.Fatalf("cannot connect to the contract server at %s: %v", addr, err)
	}
	if _, err := client.GetModelInfo(ctx); err != nil { // warm-up, as the example program does
		t.Fatalf("GetModelInfo: %v", err)
	}
	var out bytes.Buffer
	// The events scenarios record under the Go run's own event ids (the
	// Python and Java runs use theirs), and print them without the prefix.
	if _, err := scenario.RunAll(ctx, client, list, &out, eventIDPrefix); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.jsonl"), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	var expected []any
	data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &expected); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(expected) || len(lines) != len(list) {
		t.Fatalf("%d scenarios, %d expected answers, %d output lines", len(list), len(expected), len(lines))
	}
	for i, line := range lines {
		var got any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		for _, d := range differences(normalize(expected[i]), normalize(got), "") {
			t.Errorf("scenario %d %q: %s", i, list[i].Name, d)
		}
	}
}

// normalize returns a line as the contract compares it: an error keeps its
// code and, for INVALID_ARGUMENT, the field its message starts with
// ("user_id: must not be empty" -> "user_id"); other messages are dropped, as
// each gRPC implementation words its own. An expectation may give error_field
// instead of a message. (The same rules as couponrank.client.scenario.normalize.)
func normalize(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		out[k] = x
	}
	if out["ok"] == true {
		return out
	}
	msg, _ := out["error_message"].(string)
	field, hasField := out["error_field"]
	delete(out, "error_message")
	delete(out, "error_field")
	if out["error_code"] == "INVALID_ARGUMENT" {
		if !hasField {
			field, _, _ = strings.Cut(msg, ":")
		}
		out["error_field"] = field
	}
	return out
}

// differences lists where two parsed JSON values differ: numbers within
// relTolerance, everything else exactly.
func differences(want, got any, path string) []string {
	here := path
	if here == "" {
		here = "."
	}
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		if !ok || !(w == g || math.Abs(w-g) <= relTolerance*math.Max(math.Abs(w), math.Abs(g))) {
			return []string{fmt.Sprintf("%s: want %v, got %v", here, want, got)}
		}
		return nil
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %v", here, got)}
		}
		var out []string
		for _, k := range sortedKeys(w) {
			if _, ok := g[k]; !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			out = append(out, differences(w[k], g[k], path+"."+k)...)
		}
		for _, k := range sortedKeys(g) {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s.%s: unexpected %v", path, k, g[k]))
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %v, got %v", here, want, got)}
		}
		var out []string
		for i := range w {
			out = append(out, differences(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	default: // string, bool, nil
		if want != got {
			return []string{fmt.Sprintf("%s: want %#v, got %#v", here, want, got)}
		}
		return nil
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestDifferences(t *testing.T) {
	parse := func(s string) any {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		want, got string
		n         int
	}{
		{`{"a":[1,0.5,null,true,"x"]}`, `{"a":[1.0,0.5000000000001,null,true,"x"]}`, 0},
		{`{"a":1}`, `{"a":1.001}`, 1},
		{`{"a":true}`, `{"a":1}`, 1},
		{`{"a":[1]}`, `{"a":[1],"b":2}`, 1},
		{`{"a":[1]}`, `{"a":[1,2]}`, 1},
		{`{"ok":false,"error_code":"INVALID_ARGUMENT","error_field":"user_id"}`,
			`{"ok":false,"error_code":"INVALID_ARGUMENT","error_message":"user_id: must not be empty"}`, 0},
		{`{"ok":false,"error_code":"INVALID_ARGUMENT","error_field":"user_id"}`,
			`{"ok":false,"error_code":"INVALID_ARGUMENT","error_message":"top_k: must not be negative"}`, 1},
		{`{"ok":false,"error_code":"DEADLINE_EXCEEDED"}`,
			`{"ok":false,"error_code":"DEADLINE_EXCEEDED","error_message":"context deadline exceeded"}`, 0},
	} {
		if d := differences(normalize(parse(c.want)), normalize(parse(c.got)), ""); len(d) != c.n {
			t.Errorf("%s vs %s: %d differences %q, want %d", c.want, c.got, len(d), d, c.n)
		}
	}
}

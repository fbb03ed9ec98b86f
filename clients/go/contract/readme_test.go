package contract

import (
	"context"
	"encoding/json"
	"go/version"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const clientModule = "github.com/couponrank/couponrank/clients/go"

// TestReadmeGoSnippet follows the root README's Go section as a newcomer
// would: it saves the ```go block as main.go in a new folder, runs each step of
// the section's ```sh block as written (only /path/to/couponrank replaced by
// this checkout, and `go build` instead of the final `go run`), vets the
// program, and checks the module those steps made: it still requires this
// client, its go line is not above the client's, and it resolved grpc to the
// version the client pins (not the newest). With the contract server it runs
// the program and wants at least one ranked coupon.
//
// The steps run with GOPROXY=off, from the module cache (filled first by `go
// mod tidy -diff` in this module, which also checks that it is tidy and needs no
// network when the cache holds everything already). A step that has to look a
// module up for an import (online, the newest version would be taken) fails.
func TestReadmeGoSnippet(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run the README's set-up steps with")
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?ms)^```go\n(.*?)^```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) != 1 {
		t.Fatalf("README.md should have exactly one ```go block (the client snippet), has %d", len(blocks))
	}
	code := blocks[0][1]
	steps := readmeGoSteps(t, string(readme))

	client := filepath.Join(root, "clients", "go")
	clientMod := goModJSON(t, client, os.Environ())
	// The client module must be tidy (a consumer's tidy resolves its imports
	// from the client's requirements); this also fills the module cache with
	// what tidy needs, without the network when the cache has it already.
	if out, err := exec.Command("go", "-C", client, "mod", "tidy", "-diff").CombinedOutput(); err != nil {
		t.Fatalf("clients/go is not tidy (run go mod tidy there), or its modules cannot be downloaded: %v\n%s", err, out)
	}

	mod := t.TempDir()
	if err := os.WriteFile(filepath.Join(mod, "main.go"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	// GOSUMDB=off: nothing is downloaded, and what the cache holds was checked
	// when it was (the checksum database may be out of reach without a proxy).
	env := append(os.Environ(), "GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOTOOLCHAIN=local")
	bin := filepath.Join(mod, "snippet")
	for i, step := range steps {
		if i == len(steps)-1 { // go run . ADDR
			step = "go build -o " + shellQuote(bin) + " ."
		}
		step = strings.ReplaceAll(step, "/path/to/couponrank", shellQuote(root))
		cmd := exec.Command(sh, "-c", step)
		cmd.Dir, cmd.Env = mod, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			gomod, _ := os.ReadFile(filepath.Join(mod, "go.mod"))
			t.Fatalf("README Go step %q: %v\n%s\n--- go.mod:\n%s--- main.go:\n%s", step, err, out, gomod, code)
		}
		// An import no required module provides: online, the go command
		// takes the newest version that has the package.
		if strings.Contains(string(out), "finding module for package") {
			t.Errorf("README Go step %q had to look modules up (the client was not required yet?):\n%s", step, out)
		}
	}
	runGo(t, mod, env, "vet", ".")

	got := goModJSON(t, mod, env)
	if got.require(clientModule) == "" {
		t.Errorf("after the README's steps go.mod does not require %s:\n%+v", clientModule, got)
	}
	if got.Go == "" || version.Compare("go"+got.Go, "go"+clientMod.Go) > 0 {
		t.Errorf("after the README's steps go.mod says go %q, above the client's go %s", got.Go, clientMod.Go)
	}
	for _, m := range []string{"google.golang.org/grpc", "google.golang.org/protobuf"} {
		want := clientMod.require(m)
		if want == "" {
			t.Errorf("clients/go/go.mod does not require %s", m)
			continue
		}
		if v := strings.TrimSpace(runGo(t, mod, env, "list", "-m", "-f", "{{.Version}}", m)); v != want {
			t.Errorf("after the README's steps %s is %s, not %s as clients/go/go.mod pins", m, v, want)
		}
	}

	addr, dir := contractServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, addr).CombinedOutput()
	if werr := os.WriteFile(filepath.Join(dir, "readme-go.txt"), out, 0o644); werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatalf("the README's Go snippet failed: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "no coupons") {
		t.Fatalf("the README's Go snippet got an error:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^1 c\S+ `).Match(out) {
		t.Fatalf("the README's Go snippet ranked no coupon:\n%s", out)
	}
}

// readmeGoSteps returns the commands of the ```sh block after the ```go block
// in the README's "### Go" section: continuation lines joined, comment-only
// and blank lines dropped. The last one must be the `go run` line.
func readmeGoSteps(t *testing.T, readme string) []string {
	t.Helper()
	section := regexp.MustCompile(`(?ms)^### Go\n(.*?)(?:^##|\z)`).FindStringSubmatch(readme)
	if section == nil {
		t.Fatal("README.md has no ### Go section")
	}
	goAt := strings.Index(section[1], "```go\n")
	sh := regexp.MustCompile("(?ms)^```sh\n(.*?)^```").FindAllStringSubmatchIndex(section[1], -1)
	if goAt < 0 || len(sh) != 1 || sh[0][0] < goAt {
		t.Fatalf("README.md's ### Go section should have the program (```go) and then one ```sh block of set-up steps; has %d ```sh blocks", len(sh))
	}
	text := strings.ReplaceAll(section[1][sh[0][2]:sh[0][3]], "\\\n", "")
	var steps []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			steps = append(steps, line)
		}
	}
	if len(steps) == 0 || !strings.HasPrefix(steps[len(steps)-1], "go run ") {
		t.Fatalf("the README's Go set-up steps should end with `go run`: %q", steps)
	}
	return steps
}

type goMod struct {
	Go      string
	Require []struct{ Path, Version string }
}

func (m goMod) require(path string) string {
	for _, r := range m.Require {
		if r.Path == path {
			return r.Version
		}
	}
	return ""
}

func goModJSON(t *testing.T, dir string, env []string) goMod {
	t.Helper()
	var m goMod
	if err := json.Unmarshal([]byte(runGo(t, dir, env, "mod", "edit", "-json")), &m); err != nil {
		t.Fatalf("go mod edit -json in %s: %v", dir, err)
	}
	return m
}

func runGo(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go %s in %s: %v\n%s%s", strings.Join(args, " "), dir, err, out, stderr)
	}
	return string(out)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

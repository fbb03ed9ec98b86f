package contract

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReadmeGoSnippet builds the README's Go snippet as its own module, using
// this client through a replace directive (as README.md tells users of a
// checkout to), vets it, and runs it against the contract server when there is
// one.
func TestReadmeGoSnippet(t *testing.T) {
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

	mod := t.TempDir()
	client := filepath.Join(root, "clients", "go")
	sum, err := os.ReadFile(filepath.Join(client, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/readme\n\ngo 1.25.0\n\n" +
		"require github.com/couponrank/couponrank/clients/go v0.0.0\n\n" +
		"replace github.com/couponrank/couponrank/clients/go => " + client + "\n"
	for name, data := range map[string][]byte{"main.go": []byte(code), "go.mod": []byte(gomod), "go.sum": sum} {
		if err := os.WriteFile(filepath.Join(mod, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(mod, "snippet")
	for _, args := range [][]string{{"mod", "tidy"}, {"vet", "."}, {"build", "-o", bin, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = mod
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in the README snippet's module: %v\n%s\n--- main.go:\n%s", strings.Join(args, " "), err, out, code)
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
	// each candidate is printed, ranked or ineligible
	for _, m := range regexp.MustCompile(`"(c\d{5})"`).FindAllStringSubmatch(code, -1) {
		if !strings.Contains(string(out), m[1]) {
			t.Errorf("the README's Go snippet did not print candidate %s:\n%s", m[1], out)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADME keeps the README honest: its quick start has exactly two
// commands, one runs the demo (and the demo works), the other is the test
// command that .ci/run runs.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Quick start.*?```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no Quick start section with a sh block")
	}
	var cmds []string
	for _, line := range strings.Split(strings.TrimSpace(string(m[1])), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			cmds = append(cmds, line)
		}
	}
	if len(cmds) != 2 {
		t.Fatalf("Quick start has %d commands, want exactly 2: %q", len(cmds), cmds)
	}
	demo, test := cmds[0], cmds[1]
	if demo != "go run ./cmd/custos demo" {
		t.Errorf("first command %q; want the demo", demo)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(ci), "\n") {
		if strings.TrimSpace(line) == test {
			found = true
		}
	}
	if !found {
		t.Errorf(".ci/run does not run the README's test command %q as a line of its own", test)
	}

	// Run the demo as `go run ./cmd/custos demo` would, in-process.
	var out bytes.Buffer
	mm := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if err := mm.Run(context.Background(), strings.Fields(demo)[3:]); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"log verified:", "HTTP 403 forbidden", "imported 200", "trap's critical alert existed", "verified offline", "HTTP 410 gone"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if regexp.MustCompile(`[A-Za-z]+\.[A-Za-z]+\.\d+@example-\d+\.test`).Match(out.Bytes()) {
		t.Errorf("demo output shows a full address:\n%s", out.String())
	}
}

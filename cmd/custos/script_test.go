package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/node"
)

// TestMain lets the test binary be custos itself for testscript.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"custos": func() { os.Exit(NewMain().Exec(context.Background(), os.Args[1:])) },
	})
}

// TestScripts runs testdata/script/*.txtar: custos as a user types it.
// Scripts start a real server with "start-server", read enrollment
// secrets from its mail directory with "mail-secret", and keep ids
// printed by the last command with "grab".
// testKMS holds each script's test KMS (*testscript.TestScript → *kmstest.KMS).
var testKMS sync.Map

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			// start-server: init a data directory, serve it on 127.0.0.1:0
			// and act as its operator (CUSTOS_SERVER, CUSTOS_KEY).
			"start-server": func(ts *testscript.TestScript, neg bool, args []string) {
				dir := ts.MkAbs("data")
				var out bytes.Buffer
				m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(k string) string {
					return map[string]string{"CUSTOS_DATA": dir}[k]
				}}
				ts.Check(m.Run(context.Background(), []string{"init"}))
				cfg := DefaultConfig()
				cfg.DataDir, cfg.Addr = dir, "127.0.0.1:0"
				cfg, err := reloadConfig(cfg)
				ts.Check(err)
				srv, err := NewMain().startServer(context.Background(), cfg, nil, node.Options{})
				ts.Check(err)
				ts.Defer(func() { srv.Close() })
				ts.Setenv("CUSTOS_DATA", dir)
				ts.Setenv("CUSTOS_SERVER", srv.URL)
				ts.Setenv("CUSTOS_KEY", keyRE.FindString(out.String()))
			},
			// mail-secret EMAIL VAR: the secret of the next enrollment mail to EMAIL.
			"mail-secret": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: mail-secret EMAIL VAR")
				}
				seen := map[string]bool{}
				for _, f := range strings.Fields(ts.Getenv("SEEN_MAIL")) {
					seen[f] = true
				}
				secret, err := awaitEnrollment(context.Background(), filepath.Join(ts.Getenv("CUSTOS_DATA"), "mail"), args[0], seen)
				ts.Check(err)
				var files []string
				for f := range seen {
					files = append(files, f)
				}
				ts.Setenv("SEEN_MAIL", strings.Join(files, " "))
				ts.Setenv(args[1], secret)
			},
			// await-alert RULE VAR: VAR is the id of the first alert of RULE
			// the server's detector raises (within 30 s), read as the
			// current key (security staff).
			"await-alert": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: await-alert RULE VAR")
				}
				c := newClient(ts.Getenv("CUSTOS_SERVER"), ts.Getenv("CUSTOS_KEY"))
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					for al, err := range c.Alerts(context.Background(), "") {
						ts.Check(err)
						if al.RuleID == args[0] {
							ts.Setenv(args[1], al.ID)
							return
						}
					}
				}
				ts.Fatalf("no %s alert within 30 s", args[0])
			},
			// eventually REGEXP PROGRAM ARGS…: run it until it succeeds with
			// REGEXP in its stdout (within 30 s), for what the server does a
			// moment after it answers (a checkpoint covering the last
			// entries is signed within a second).
			"eventually": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 || neg {
					ts.Fatalf("usage: eventually REGEXP PROGRAM ARGS…")
				}
				re := regexp.MustCompile(args[0])
				var err error
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
					if err = ts.Exec(args[1], args[2:]...); err == nil && re.MatchString(ts.ReadFile("stdout")) {
						return
					}
				}
				ts.Fatalf("%s: no success with %s in its stdout within 30 s (%v)", strings.Join(args[1:], " "), args[0], err)
			},
			// test-kms new VAR | revoke | restore: a test KMS (a real Tink KMS
			// client registered in this process, internal/kmstest) for a
			// tenant's own key; VAR is the URI of a key on it. revoke and
			// restore custos's access to it, as the tenant would.
			"test-kms": func(ts *testscript.TestScript, neg bool, args []string) {
				switch {
				case len(args) == 2 && args[0] == "new":
					k := kmstest.New(t)
					testKMS.Store(ts, k)
					ts.Setenv(args[1], k.URI("tenant"))
				case len(args) == 1 && (args[0] == "revoke" || args[0] == "restore"):
					k, ok := testKMS.Load(ts)
					if !ok {
						ts.Fatalf("test-kms %s: no test-kms new before", args[0])
					}
					if args[0] == "revoke" {
						k.(*kmstest.KMS).Revoke()
					} else {
						k.(*kmstest.KMS).Restore()
					}
				default:
					ts.Fatalf("usage: test-kms new VAR | revoke | restore")
				}
			},
			// grab VAR REGEXP: VAR is the first match of REGEXP in the last stdout.
			"grab": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: grab VAR REGEXP")
				}
				v := regexp.MustCompile(args[1]).FindString(ts.ReadFile("stdout"))
				if v == "" {
					ts.Fatalf("no %s in stdout", args[1])
				}
				ts.Setenv(args[0], v)
			},
		},
	})
}

// TestEveryVerbHasHelp: "custos VERB -h", for every verb and subverb in
// the table, exits 0 and prints a usage with an example on stdout,
// without the key. It also writes docs/cli.md from those usages when
// CUSTOS_UPDATE_DOCS=1, and otherwise checks the page is up to date.
func TestEveryVerbHasHelp(t *testing.T) {
	const secret = "cst_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	doc := &bytes.Buffer{}
	doc.WriteString("# The custos command line\n\n<!-- generated by TestEveryVerbHasHelp in cmd/custos (CUSTOS_UPDATE_DOCS=1 go test ./cmd/custos -run TestEveryVerbHasHelp); do not edit -->\n\n```\n")
	printHelp(doc)
	doc.WriteString("```\n")
	var walk func(prefix []string, cs []*command)
	walk = func(prefix []string, cs []*command) {
		for _, c := range cs {
			args := append(append([]string{}, prefix...), c.name)
			if c.subs != nil {
				walk(args, c.subs)
				continue
			}
			var out, errb bytes.Buffer
			m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
				return map[string]string{"CUSTOS_KEY": secret}[k]
			}}
			err := m.Run(context.Background(), append(args, "-h"))
			usage := out.String()
			if strings.Count(usage, "Usage") != 1 || errb.Len() > 0 {
				t.Errorf("custos %s -h prints other than one usage block:\n%s%s", strings.Join(args, " "), out.String(), errb.String())
			}
			name := strings.Join(args, " ")
			if !errors.Is(err, errHelp) || m.Exec(context.Background(), append(args, "--help")) != exitOK {
				t.Errorf("custos %s -h: %v, want exit 0", name, err)
			}
			if !strings.HasPrefix(out.String(), "Usage: custos "+name) || !strings.Contains(out.String(), "Example:\n  custos "+name) || !strings.Contains(out.String(), "\n  -") {
				t.Errorf("custos %s -h prints no usage with an example and flags on stdout:\n%s", name, out.String())
			}
			if strings.Contains(out.String()+errb.String(), secret[:12]) {
				t.Errorf("custos %s -h prints the key", name)
			}
			// Each verb its own FlagSet: no flag says it is for a sibling
			// ("approve: how long" under deny).
			for _, sib := range cs {
				for _, line := range strings.Split(usage, "\n") {
					if strings.HasPrefix(strings.TrimSpace(line), sib.name+": ") {
						t.Errorf("custos %s -h shows a flag of %s: %q", name, sib.name, strings.TrimSpace(line))
					}
				}
			}
			doc.WriteString("\n## custos " + name + "\n\n```\n" + usage + "```\n")
		}
	}
	walk(nil, commands)
	path := filepath.Join("..", "..", "docs", "cli.md")
	if os.Getenv("CUSTOS_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, doc.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, doc.Bytes()) {
		t.Errorf("docs/cli.md is not what custos -h prints; run CUSTOS_UPDATE_DOCS=1 go test ./cmd/custos -run TestEveryVerbHasHelp")
	}
}

// notScripted are the verbs no script runs, each with the test that runs
// it against a real server or data directory instead (the test checks
// that the named test exists).
var notScripted = map[string]string{
	"init":                  "TestInitServeClientsVerify", // and every script's start-server
	"serve":                 "e2e.TestCrashUnderLoad",     // the built binary's serve, killed and restarted; start-server serves through startServer
	"demo":                  "TestREADME",
	"send":                  "TestSendCLI",                      // needs an upstream SMTP server in the config
	"relay approve":         "TestSendCLI",                      // the upstream only exists once a send names it
	"evidence":              "TestTrapCLI",                      // a trapped message comes through SMTP
	"relay serve":           "TestRelayServeCLI",                // runs until stopped
	"backup":                "TestBackupUnderLoadRestoreVerify", // backups taken while contacts are added
	"restore":               "TestBackupUnderLoadRestoreVerify", // the server stopped between
	"key rotate":            "TestOperatorKeyLifecycle",
	"operator recover":      "TestOperatorKeyLifecycle", // a host command, answered by a running server
	"version":               "TestVersion",
	"key networks":          "TestKeyNetworksCLI",
	"principal bind-cert":   "node.TestCertBoundPrincipal", // the route through the typed client, with a CA and client certificates made in the test; the verb itself is a thin wrapper
	"principal unbind-cert": "node.TestCertBoundPrincipal",
	"keys rewrap-kek":       "TestKeysRewrapKEKCLI", // a host command whose custos.json changes between runs
	"log rotate-key":        "TestLogRotateKeyCLI",  // a host command that replaces log.key
}

// TestEveryVerbIsScripted: each verb of the table has a happy path in a
// script (a line that runs it, without -h, and expects success), or says in notScripted where
// it is exercised instead.
func TestEveryVerbIsScripted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "script", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)                    // a "! custos …" line is a refusal, not a happy path
			if len(fields) > 0 && fields[0] == "eventually" { // eventually 'REGEXP' custos …
				fields = fields[max(slices.Index(fields, "custos"), 0):]
			}
			if len(fields) < 2 || fields[0] != "custos" || slices.Contains(fields, "-h") || slices.Contains(fields, "--help") {
				continue
			}
			ran[fields[1]] = true
			if len(fields) > 2 {
				ran[fields[1]+" "+fields[2]] = true
			}
		}
	}
	var walk func(prefix string, cs []*command)
	walk = func(prefix string, cs []*command) {
		for _, c := range cs {
			name := strings.TrimSpace(prefix + " " + c.name)
			if c.subs != nil {
				walk(name, c.subs)
				continue
			}
			if test := notScripted[name]; test != "" {
				if !testExists(t, test) {
					t.Errorf("custos %s: notScripted names %s, which is not a test here", name, test)
				}
			} else if !ran[name] {
				t.Errorf("custos %s: no script runs it (testdata/script)", name)
			}
		}
	}
	walk("", commands)
}

// testExists reports whether a test function of this package (or, named
// PKG.TestX, of the package in the tree's folder PKG) is named name.
func testExists(t *testing.T, name string) bool {
	pattern := "*_test.go"
	if pkg, n, ok := strings.Cut(name, "."); ok {
		name, pattern = n, filepath.Join("..", "..", pkg, "*_test.go")
	}
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\nfunc "+name+"(t *testing.T) {") {
			return true
		}
	}
	return false
}

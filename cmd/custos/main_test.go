package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/vault"
)

// cli runs custos in-process as a user would type it.
type cli struct {
	t   *testing.T
	env map[string]string
	op  string // the operator's key, once served
	dir string // the data directory, once served: its mail/ is the mailboxes
	// approvers are keys that may approve enrollments: tenant admins by
	// tenant, operator and security keys under "".
	approvers map[string][]string
	seen      map[string]bool // mails read
	tenants   int
}

func (c *cli) run(args ...string) (string, error) {
	c.t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return c.env[k] }}
	err := m.Run(context.Background(), args)
	return out.String() + errb.String(), err
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("custos %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// served initialises a data directory, serves it on loopback and returns
// a CLI pointed at it, acting as the operator (also kept in c.op).
func served(t *testing.T) (*cli, string) {
	t.Helper()
	c := initialised(t)
	c.env["CUSTOS_SERVER"], c.env["CUSTOS_KEY"] = startServe(t, c.dir), c.op
	return c, c.dir
}

// initialised runs `custos init` in a new data directory and returns a CLI
// on it that knows the operator's key (c.op) but no server yet.
func initialised(t *testing.T) *cli {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	c := &cli{t: t, env: map[string]string{"CUSTOS_DATA": dir}, dir: dir, seen: map[string]bool{}}
	c.op = keyRE.FindString(c.must("init"))
	c.approvers = map[string][]string{"": {c.op}}
	return c
}

// tenant creates a tenant as the operator; its first admin enrolls from
// the mail to the registered address. It returns the tenant and the
// admin's key.
func (c *cli) tenant(name string) (id, adminKey string) {
	c.t.Helper()
	c.tenants++
	email := fmt.Sprintf("admin%d@tenant.test", c.tenants)
	id = idRE("tn").FindString(c.must("tenant", "create", "--admin-email", email, name)) // as CUSTOS_KEY: the operator
	key := c.env["CUSTOS_KEY"]
	adminKey = c.enroll(email)
	c.env["CUSTOS_KEY"] = key
	if c.approvers == nil {
		c.approvers = map[string][]string{"": {key}}
	}
	c.approvers[id] = append(c.approvers[id], adminKey)
	return id, adminKey
}

// enroll reads the newest unread enrollment mail to email and runs
// `custos enroll` with its secret, as the holder would.
func (c *cli) enroll(email string, flags ...string) string {
	c.t.Helper()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	secret, err := awaitEnrollment(context.Background(), filepath.Join(c.env["CUSTOS_DATA"], "mail"), email, c.seen)
	if err != nil {
		c.t.Fatal(err)
	}
	key := c.env["CUSTOS_KEY"]
	defer func() { c.env["CUSTOS_KEY"] = key }()
	return keyRE.FindString(c.mustAs("", append([]string{"enroll", secret}, flags...)...))
}

// principal creates, as the operator, a principal of kind (tenant may be
// empty) held by owner@corp.test; has its enrollment approved where it
// waits for a second party; and enrolls it. It returns both.
func (c *cli) principal(kind, tenant, owner, name string) (id, key string) {
	c.t.Helper()
	args := []string{"principal", "create", "--kind", kind, "--owner", owner, "--email", owner + "@corp.test", name}
	if tenant != "" {
		args = append(args, "--tenant", tenant)
	}
	out := c.mustAs(c.op, args...)
	id = idRE("pr").FindString(out)
	if strings.Contains(out, "waits for") {
		en := idRE("en").FindString(out)
		group := ""
		if strings.Contains(out, "tenant's admins") {
			group = tenant
		}
		approved := false
		for i := len(c.approvers[group]) - 1; i >= 0 && !approved; i-- {
			_, err := c.runAs(c.approvers[group][i], "enrollment", "approve", en)
			approved = err == nil
		}
		if !approved {
			c.t.Fatalf("nobody could approve %s", en)
		}
	}
	key = c.enroll(owner + "@corp.test")
	switch kind {
	case "tenant_admin":
		c.approvers[tenant] = append(c.approvers[tenant], key)
	case "operator", "staff_security":
		c.approvers[""] = append(c.approvers[""], key)
	}
	return id, key
}

// runAs runs a command with key as CUSTOS_KEY.
func (c *cli) runAs(key string, args ...string) (string, error) {
	c.env["CUSTOS_KEY"] = key
	return c.run(args...)
}

// mustAs runs a command with key as CUSTOS_KEY.
func (c *cli) mustAs(key string, args ...string) string {
	c.t.Helper()
	c.env["CUSTOS_KEY"] = key
	return c.must(args...)
}

var (
	keyRE = regexp.MustCompile(`cst_[a-z2-7]{39}`)
	idRE  = func(prefix string) *regexp.Regexp { return regexp.MustCompile(prefix + `_[a-z2-7]{26}`) }
)

// startServe runs `custos serve` in-process on 127.0.0.1:0.
func startServe(t *testing.T, dir string) string {
	t.Helper()
	srv := startServer(t, dir)
	t.Cleanup(func() { srv.Close() })
	return srv.URL
}

// startServer is startServe for tests that stop the server themselves.
func startServer(t *testing.T, dir string) *node.Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Addr = dir, "127.0.0.1:0"
	cfg, err := reloadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewMain().startServer(context.Background(), cfg, nil, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestInitServeClientsVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := &cli{t: t, env: map[string]string{"CUSTOS_DATA": dir}}
	out := c.must("init")
	op := keyRE.FindString(out)
	if op == "" {
		t.Fatalf("init printed no key:\n%s", out)
	}
	if st, _ := os.Stat(filepath.Join(dir, "kek.json")); st == nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kek.json missing or not 0600")
	}
	if out, err := c.run("init"); err == nil || !strings.Contains(out+err.Error(), "already initialised") {
		t.Fatalf("second init: %v %s", err, out)
	}

	c.env["CUSTOS_SERVER"] = startServe(t, dir)
	c.env["CUSTOS_KEY"] = op
	tenant, _ := c.tenant("Acme")
	if !strings.Contains(c.must("tenant", "ls"), tenant) {
		t.Fatal("tenant ls misses the tenant")
	}
	// The operator's own tenant admin waits for the tenant's admin.
	out = c.must("principal", "create", "--kind", "tenant_admin", "--tenant", tenant, "--email", "second@corp.test", "acme-admin")
	if !strings.Contains(out, "waits for one of the tenant's admins") {
		t.Fatalf("operator creating a tenant admin: %s", out)
	}
	if _, err := c.run("enrollment", "approve", idRE("en").FindString(out)); err == nil {
		t.Fatal("the operator approved his own tenant admin")
	}
	c.env["CUSTOS_KEY"] = c.approvers[tenant][0]
	c.must("enrollment", "approve", idRE("en").FindString(out))
	adminKey := c.enroll("second@corp.test", "--expires-in", "24h")
	if adminKey == "" {
		t.Fatal("enroll printed no key")
	}
	c.env["CUSTOS_KEY"] = adminKey
	list := idRE("ls").FindString(c.must("list", "create", "--tenant", tenant, "news"))
	token := idRE("ct").FindString(c.must("contact", "add", "--tenant", tenant, "--list", list, "--attr", "first_name=Jo", "jo@example.test"))
	if got := c.must("contact", "get", "--tenant", tenant, token); !strings.Contains(got, "jo@example.test") || !strings.Contains(got, "Jo") {
		t.Fatalf("contact get:\n%s", got)
	}
	if got := c.must("contact", "lookup", "--tenant", tenant, "--list", list, "jo@EXAMPLE.test"); !strings.Contains(got, token) {
		t.Fatalf("lookup:\n%s", got)
	}
	csv := filepath.Join(t.TempDir(), "in.csv")
	os.WriteFile(csv, []byte("email,plan\na@example.test,pro\nbroken\nb@example.test,free\n"), 0o600)
	// A refused row: exit code 3, the line and its reason code, never its content.
	if got, err := c.run("import", "--tenant", tenant, "--list", list, csv); !errors.Is(err, errPartial) || !strings.Contains(got, "imported 2") || !strings.Contains(got, "line 3: ") || strings.Contains(got, "broken") {
		t.Fatalf("import: %v\n%s", err, got)
	}
	var page struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(c.must("contact", "ls", "--tenant", tenant, "--list", list, "--json")), &page); err != nil || len(page.Items) != 3+2*vault.DefaultCanaries { // the list's canaries and the reader's watermark rows
		t.Fatalf("contact ls --json: %v, %d items", err, len(page.Items))
	}
	exp := filepath.Join(t.TempDir(), "out.csv")
	c.must("export", "--tenant", tenant, "--list", list, "--out", exp)
	if b, _ := os.ReadFile(exp); strings.Count(string(b), "\n") != 4+2*vault.DefaultCanaries {
		t.Fatalf("export:\n%s", b)
	}
	// Errors carry the server's code.
	if out, err := c.run("contact", "get", "--tenant", tenant, "ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("missing contact: %v %s", err, out)
	}
	c.env["CUSTOS_KEY"] = op
	keys := c.must("key", "ls")
	if !strings.Contains(keys, "cst_") || strings.Contains(keys, adminKey) {
		t.Fatalf("key ls must show hints, never secrets:\n%s", keys)
	}

	if got := c.must("log", "verify"); !strings.Contains(got, "log verified") {
		t.Fatalf("log verify:\n%s", got)
	}
	if got := c.must("log", "proof", "--index", "0"); !strings.Contains(got, "included in the tree") {
		t.Fatalf("log proof:\n%s", got)
	}
}

func TestLogVerifyNamesTamperedEntry(t *testing.T) {
	c, dir := served(t)
	for i := 0; i < 5; i++ {
		c.tenant("T")
	}
	c.must("log", "verify")

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "custos.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_leaves SET data = replace(data, 'tenant.create', 'tenant.read') WHERE idx = 2`); err != nil {
		t.Fatal(err)
	}
	_, err = c.run("log", "verify")
	if err == nil || !strings.Contains(err.Error(), "entry 2:") {
		t.Fatalf("log verify after tampering entry 2: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	c := &cli{t: t, env: map[string]string{}}
	for _, args := range [][]string{{}, {"nope"}, {"tenant"}, {"tenant", "create"}, {"list", "ls"}} {
		if _, err := c.run(args...); err == nil {
			t.Errorf("custos %q succeeded", args)
		}
	}
	if _, err := c.run("serve", "--data", t.TempDir()); err == nil || !strings.Contains(err.Error(), "custos init") {
		t.Errorf("serve on an empty directory: %v", err)
	}
}

// TestHelpShowsNoSecret: with CUSTOS_KEY set, a command's -h prints its
// flags without the key, and is not an error (issue 13, finding 3).
func TestHelpShowsNoSecret(t *testing.T) {
	const secret = "cst_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	c := &cli{t: t, env: map[string]string{"CUSTOS_KEY": secret}}
	for _, args := range [][]string{{"tenant", "ls", "-h"}, {"support", "requests", "--help"}, {"enroll", "-h"}, {"review", "-h"}, {"alerts", "-h"}} {
		out, err := c.run(args...)
		if !errors.Is(err, errHelp) {
			t.Errorf("custos %s: %v, want the help shown and exit 0", strings.Join(args, " "), err)
		}
		if strings.Contains(out, secret) || strings.Contains(out, secret[:12]) {
			t.Errorf("custos %s prints the key:\n%s", strings.Join(args, " "), out)
		}
	}
}

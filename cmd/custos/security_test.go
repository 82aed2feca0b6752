package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/node"
)

func TestRulesCheckCLI(t *testing.T) {
	dir := t.TempDir()
	c := &cli{t: t, env: map[string]string{}}
	// Every rule of the pack's files, counted apart from the loader.
	ids := 0
	files, _ := fs.Glob(detect.Pack, "rules/*.yaml")
	for _, f := range files {
		b, _ := fs.ReadFile(detect.Pack, f)
		ids += len(regexp.MustCompile(`(?m)^id: `).FindAll(b, -1))
	}
	if out := c.must("rules", "check"); ids < 18 || !strings.Contains(out, fmt.Sprintf("%d rules in the default pack: OK", ids)) {
		t.Fatalf("default pack:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, "good.yaml"), []byte("id: a\ntitle: t\nlevel: low\ncondition: event.staff\n"), 0o600)
	if out := c.must("rules", "check", dir); !strings.Contains(out, "1 rules in "+dir+": OK") {
		t.Fatalf("good dir:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("id: b\ntitle: t\nlevel: loud\ncondition: event.staff\n"), 0o600)
	if _, err := c.run("rules", "check", dir); err == nil || !strings.Contains(err.Error(), "bad.yaml:3: level must be one of") || !strings.Contains(err.Error(), "nothing was loaded") {
		t.Fatalf("bad dir: %v", err)
	}
}

// TestContainmentCLI: security staff freeze a tenant (its export stops),
// lift it with a reason, list alerts and trace an address.
func TestContainmentCLI(t *testing.T) {
	c, _ := served(t)
	tenant, _ := c.tenant("Acme")
	_, adminKey := c.principal("tenant_admin", tenant, "acme", "acme-admin")
	_, secKey := c.principal("staff_security", "", "sec", "sec")
	as := c.runAs
	list := idRE("ls").FindString(c.mustAs(adminKey, "list", "create", "--tenant", tenant, "news"))
	c.mustAs(adminKey, "contact", "add", "--tenant", tenant, "--list", list, "jo@example.test")

	if _, err := as(secKey, "contain", "freeze", tenant); err == nil {
		t.Fatal("a freeze without a reason was accepted")
	}
	c.mustAs(secKey, "contain", "freeze", tenant, "--reason", "investigating INC-9")
	if _, err := as(adminKey, "export", "--tenant", tenant, "--list", list, "--out", filepath.Join(t.TempDir(), "x.csv")); err == nil || !strings.Contains(err.Error(), "frozen") {
		t.Fatalf("export from a frozen tenant: %v", err)
	}
	c.mustAs(secKey, "contain", "unfreeze", tenant, "--reason", "INC-9 closed")
	c.mustAs(adminKey, "export", "--tenant", tenant, "--list", list, "--out", filepath.Join(t.TempDir(), "x.csv"))
	if out := c.mustAs(secKey, "trace", "jo@example.test"); !strings.Contains(out, "not a custos canary") {
		t.Fatalf("trace of a real address:\n%s", out)
	}
	if out := c.mustAs(secKey, "alerts"); !strings.Contains(out, "ID") {
		t.Fatalf("alerts:\n%s", out)
	}
	if _, err := as(adminKey, "alerts"); err == nil {
		t.Fatal("a tenant admin listed alerts")
	}
}

// TestContainLsListsActiveContainments (issue 13, finding 6), as security
// staff type it: `custos contain ls` lists a freeze by hand with its
// reason and who may lift it, and no longer once it is lifted.
func TestContainLsListsActiveContainmentsCLI(t *testing.T) {
	c, _ := served(t)
	tenant, adminKey := c.tenant("Acme")
	_, secKey := c.principal("staff_security", "", "sec", "sec")
	if out := c.mustAs(secKey, "contain", "ls"); strings.Contains(out, tenant) {
		t.Fatalf("contain ls before anything was contained:\n%s", out)
	}
	c.mustAs(secKey, "contain", "freeze", tenant, "--reason", "investigating INC-9")
	out := c.mustAs(secKey, "contain", "ls")
	for _, want := range []string{"freeze", tenant, "investigating INC-9", "any security staff"} {
		if !strings.Contains(out, want) {
			t.Errorf("contain ls lacks %q:\n%s", want, out)
		}
	}
	if _, err := c.runAs(adminKey, "contain", "ls"); err == nil {
		t.Error("a tenant admin listed containments")
	}
	c.mustAs(secKey, "contain", "unfreeze", tenant, "--reason", "INC-9 closed")
	if out := c.mustAs(secKey, "contain", "ls"); strings.Contains(out, tenant) {
		t.Errorf("contain ls after the lift:\n%s", out)
	}
}

// TestDataFilesPrivate (issue 13, finding 8): `custos init` leaves its
// data directory 0700 (even one that existed, open) and its database
// files 0600; serve refuses a data directory or database file opened to
// others, saying which and how to fix it.
func TestDataFilesPrivateCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, env: map[string]string{"CUSTOS_DATA": dir}}
	c.must("init")
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "custos.db"): 0o600} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", p, st.Mode().Perm(), err, want)
		}
	}
	// What serve (and every command that opens the store) does at start.
	open := func() error {
		cfg := DefaultConfig()
		cfg.DataDir = dir
		cfg, err := reloadConfig(cfg)
		if err != nil {
			return err
		}
		n, err := node.Open(context.Background(), cfg, node.Options{})
		if err == nil {
			n.Close()
		}
		return err
	}
	if err := open(); err != nil {
		t.Fatalf("open a private data directory: %v", err)
	}
	os.Chmod(dir, 0o755)
	if err := open(); err == nil || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Errorf("start with a 0755 data directory: %v; want a refusal naming the fix", err)
	}
	os.Chmod(dir, 0o700)
	db := filepath.Join(dir, "custos.db")
	os.Chmod(db, 0o644)
	if err := open(); err == nil || !strings.Contains(err.Error(), "chmod 600 "+db) {
		t.Errorf("start with a 0644 database: %v; want a refusal naming the fix", err)
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRulesCheckCLI(t *testing.T) {
	dir := t.TempDir()
	c := &cli{t: t, env: map[string]string{}}
	if out := c.must("rules", "check"); !strings.Contains(out, "16 rules in the default pack: OK") {
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

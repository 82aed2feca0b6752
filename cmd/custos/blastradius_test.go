package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBlastRadiusCLI: security staff write a principal's report and its
// per-tenant split; verify-report accepts each file offline and refuses
// one with an entry hidden.
func TestBlastRadiusCLI(t *testing.T) {
	c, dir := served(t)
	tenant, _ := c.tenant("Acme")
	adminID, adminKey := c.principal("tenant_admin", tenant, "acme", "acme-admin")
	_, secKey := c.principal("staff_security", "", "sec", "sec")
	list := idRE("ls").FindString(c.mustAs(adminKey, "list", "create", "--tenant", tenant, "news"))
	c.mustAs(adminKey, "contact", "add", "--tenant", tenant, "--list", list, "jo@example.test")
	c.mustAs(adminKey, "export", "--tenant", tenant, "--list", list, "--out", filepath.Join(t.TempDir(), "x.csv"))
	time.Sleep(1200 * time.Millisecond) // a checkpoint covering the entries (signed at least every second)

	if _, err := c.runAs(adminKey, "blast-radius", "--principal", adminID); err == nil {
		t.Fatal("a tenant admin got a blast-radius report")
	}
	out := t.TempDir()
	report, split := filepath.Join(out, "report.json"), filepath.Join(out, "split")
	md := c.mustAs(secKey, "blast-radius", "--principal", adminID, "-o", report, "--split", split)
	if !strings.Contains(md, tenant) || !strings.Contains(md, "Complete:") {
		t.Fatalf("summary:\n%s", md)
	}
	logKey := filepath.Join(dir, "log.pub")
	if v := c.must("verify-report", report, "--log-key", logKey); !strings.Contains(v, "report OK") || !strings.Contains(v, "complete") {
		t.Fatalf("verify-report: %s", v)
	}
	if v := c.must("verify-report", filepath.Join(split, tenant+".json"), "--log-key", logKey); !strings.Contains(v, "part of report") {
		t.Fatalf("verify-report of the part: %s", v)
	}
	for _, f := range []string{"summary.md", "summary.json"} {
		if _, err := os.Stat(filepath.Join(split, f)); err != nil {
			t.Fatal(err)
		}
	}
	// The subject key as the issue spells it, --key ak_…, with the
	// caller's own key from CUSTOS_KEY; --key-id as before, beside the
	// caller's key given as --key cst_….
	keyID := idRE("ak").FindString(c.mustAs(c.op, "key", "ls", "--principal", adminID))
	c.env["CUSTOS_KEY"] = secKey
	for _, args := range [][]string{{"--key", keyID}, {"--key-id", keyID, "--key", secKey}, {"--key", keyID, "--key-id", keyID}} {
		md := c.must(append([]string{"blast-radius"}, args...)...)
		if !strings.Contains(md, "# Blast radius of key "+keyID) || !strings.Contains(md, tenant) {
			t.Fatalf("blast-radius %s:\n%s", strings.Join(args, " "), md)
		}
	}
	if _, err := c.run("blast-radius", "--key", keyID, "--key-id", "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa"); err == nil || !strings.Contains(err.Error(), "two subject keys") {
		t.Fatalf("--key and --key-id naming different keys: %v", err)
	}

	// One byte of the report changed: refused.
	b, _ := os.ReadFile(report)
	i := strings.Index(string(b), `"opening": "`) + len(`"opening": "`) + 60
	b[i] ^= 'A' ^ 'B'
	bad := filepath.Join(out, "bad.json")
	os.WriteFile(bad, b, 0o600)
	if _, err := c.run("verify-report", bad, "--log-key", logKey); err == nil {
		t.Fatal("an altered report verified")
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

// TestPullThroughput measures `custos audit pull` end to end: a served
// data directory whose tenant has CUSTOS_BENCH_PULL entries (appended
// through the server's own log, in bulk), pulled over loopback HTTP by the
// CLI as a tenant admin, every page's checkpoint checked for consistency
// and every entry's inclusion proof verified, the state file written per
// page.
//
//	CUSTOS_BENCH_PULL=100000 go test -run TestPullThroughput -v ./cmd/custos/
func TestPullThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CUSTOS_BENCH_PULL"))
	if n <= 0 {
		t.Skip("set CUSTOS_BENCH_PULL to a number of entries to run")
	}
	s := servedStoppable(t)
	tenant, admin := s.c.tenant("Big")
	ctx := context.Background()
	start := time.Now()
	const chunk = 50_000
	for i := 0; i < n; i += chunk {
		es := make([]audit.Entry, 0, chunk)
		for j := i; j < min(n, i+chunk); j++ {
			es = append(es, audit.Entry{Leaf: audit.Leaf{Actor: "pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ActorKind: "tenant_admin", KeyID: "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Source: "127.0.0.1", Action: "contact.read", Tenant: tenant, List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Tokens: []string{fmt.Sprintf("ct_%026d", j)}, Outcome: "ok", RequestID: fmt.Sprintf("rq_%026d", j)}})
		}
		if _, err := s.srv.Log.AppendAll(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.srv.Log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("appended %d entries of tenant %s in %v", n, tenant, time.Since(start).Round(time.Millisecond))
	s.c.env["CUSTOS_KEY"] = admin
	state := filepath.Join(t.TempDir(), "state.json")
	start = time.Now()
	out := s.c.must("audit", "pull", "--tenant", tenant, "--log-key", filepath.Join(s.dir, "log.pub"), "--state", state)
	d := time.Since(start)
	if m := seqRE.FindStringSubmatch(out); m == nil {
		t.Fatalf("pull said:\n%.2000s", out)
	} else if got, _ := strconv.Atoi(m[1]); got < n {
		t.Fatalf("pulled up to tenant_seq %d, want at least %d", got, n)
	}
	t.Logf("custos audit pull: %d entries with proofs verified in %v: %.0f entries/s", n, d.Round(time.Millisecond), float64(n)/d.Seconds())
}

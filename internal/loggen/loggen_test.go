package loggen_test

import (
	"context"
	"encoding/json"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/loggen"
	"github.com/custos-dev/custos/internal/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestFill: a generated log verifies (tree, checkpoints, commitments and
// the index columns, audit.Verify), holds exactly the subject's entries
// with actor_seq 1…n and no gap, and looks like traffic: several
// tenants, principals of several kinds, actions and outcomes.
func TestFill(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	skey, vkey, err := audit.GenerateKey("custos.test/loggen")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	lg, err := audit.Open(ctx, db.Read, db.Write, audit.Config{Origin: "custos.test/loggen", Signer: signer, Verifier: verifier,
		Placeholders: db.Placeholders, Queued: db.Queued, MaxBatch: 4096, VerifyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	subject := custos.NewID(custos.PrefixPrincipal)
	const n, k = 7000, 123
	progress := 0
	g, err := loggen.Fill(ctx, lg, loggen.Spec{Entries: n, Tenants: 5, Principals: 30, Subject: subject, SubjectEntries: k, Batch: 1000,
		Progress: func(done int) { progress = done }})
	if err != nil {
		t.Fatal(err)
	}
	if lg.Size() != n || progress != n {
		t.Fatalf("log size %d, progress %d; want %d", lg.Size(), progress, n)
	}
	if _, err := audit.Verify(ctx, db.Read, verifier, audit.VerifyOptions{}); err != nil {
		t.Fatalf("generated log does not verify: %v", err)
	}

	seqs := storetest.Column[int64](t, db.Read, `SELECT actor_seq FROM audit_leaves WHERE actor = $1 ORDER BY idx`, subject)
	if len(seqs) != k {
		t.Fatalf("%d subject entries, want %d", len(seqs), k)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("subject's actor_seq %d at its entry %d", s, i+1)
		}
	}
	key, _ := g.Subject()
	if got := storetest.Column[int](t, db.Read, `SELECT count(*) FROM audit_leaves WHERE key_id = $1`, key)[0]; got != k {
		t.Fatalf("%d entries under the subject's key, want %d", got, k)
	}

	tenants, kinds, actions, outcomes := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, body := range storetest.Column[[]byte](t, db.Read, `SELECT data FROM audit_leaves`) {
		var l audit.Leaf
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatal(err)
		}
		tenants[l.Tenant], kinds[l.ActorKind], actions[l.Action], outcomes[l.Outcome] = true, true, true, true
	}
	if len(tenants) < 5 || len(kinds) < 6 || len(actions) < 12 || !outcomes[audit.OutcomeDenied] {
		t.Fatalf("not varied: %d tenants, kinds %v, %d actions, outcomes %v", len(tenants), kinds, len(actions), outcomes)
	}
}

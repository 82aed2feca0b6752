package audit_test

import (
	"context"
	"errors"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// TestReadEntries: read without opening the log, entries come back in
// order with their bodies; a changed body or a missing row is a
// VerifyError naming its index.
func TestReadEntries(t *testing.T) {
	e := newLog(t)
	e.append(t, 20, "tn_a")
	ctx := context.Background()
	e.log.Sync(ctx)
	got, err := audit.ReadEntries(ctx, e.db.Read, 5, 10)
	if err != nil || len(got) != 10 || got[0].Index != 5 || got[9].Index != 14 {
		t.Fatalf("entries %d, err %v", len(got), err)
	}
	want, err := e.log.Entries(ctx, 5, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if string(got[i].Data) != string(want[i].Data) {
			t.Fatalf("entry %d differs from what the log reads", got[i].Index)
		}
	}
	if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1 WHERE idx = 7`, []byte(`{"action":"nothing"}`)); err != nil {
		t.Fatal(err)
	}
	var ve *audit.VerifyError
	if _, err := audit.ReadEntries(ctx, e.db.Read, 5, 10); !errors.As(err, &ve) || ve.Index != 7 {
		t.Fatalf("changed body: err = %v", err)
	}
	if _, err := e.db.Write.Exec(`DELETE FROM audit_leaves WHERE idx = 12`); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ReadEntries(ctx, e.db.Read, 10, 5); !errors.As(err, &ve) || ve.Index != 12 {
		t.Fatalf("missing entry: err = %v", err)
	}
}

package audit_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// A feed page spans many tiles and shares one proof reader: every proof
// it serves verifies against its checkpoint — also when the reader's
// caches are tiny and start over mid-page — and the checkpoint is kept.
func TestFeedPagesAcrossTilesVerify(t *testing.T) {
	for _, bounds := range []struct{ tiles, hashes int }{{512, 1 << 15}, {1, 4}} {
		audit.SetProofReaderBounds(t, bounds.tiles, bounds.hashes)
		e := newLog(t)
		e.appendConcurrently(t, 3000) // tenants tn_0..tn_2, 1000 each
		ctx := context.Background()
		var after uint64
		pages, total := 0, 0
		for {
			f, err := e.log.TenantFeed(ctx, "tn_1", after, 300)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := audit.ParseCheckpoint(f.Checkpoint, e.verifier)
			if err != nil {
				t.Fatal(err)
			}
			for _, fe := range f.Entries {
				if err := audit.CheckFeedEntry(cp, fe, "tn_1", after+1); err != nil {
					t.Fatalf("bounds %v: entry %d: %v", bounds, fe.Index, err)
				}
				after = fe.TenantSeq
				total++
			}
			pages++
			var kept sql.NullString
			if err := e.db.Read.QueryRow(`SELECT kept FROM audit_checkpoints WHERE size = $1`, int64(cp.Size)).Scan(&kept); err != nil || kept.String != audit.KeptFeed {
				t.Fatalf("the feed's checkpoint of size %d is not kept: %q, %v", cp.Size, kept.String, err)
			}
			if !f.More {
				break
			}
		}
		if total != 1000 || pages != 4 {
			t.Fatalf("bounds %v: %d entries in %d pages, want 1000 in 4", bounds, total, pages)
		}
	}
}

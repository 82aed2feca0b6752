package audit_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// TestReadCheckpoint reads the latest checkpoint from the database alone,
// as custos log checkpoint does: the empty tree's for a new log, the
// latest after appends, and nothing a key other than the log's signed.
func TestReadCheckpoint(t *testing.T) {
	ctx := context.Background()
	e := newLog(t)
	if cp, err := audit.ReadCheckpoint(ctx, e.db.Read, e.verifier); err != nil || cp.Size != 0 {
		t.Fatalf("ReadCheckpoint of a new log: %+v, %v; want the empty tree's", cp, err)
	}
	e.append(t, 5, "tn_a")
	first := e.sign(t)
	e.append(t, 7, "tn_a")
	latest := e.sign(t)
	e.log.Close() // no checkpoint signed behind the test's back from here
	if _, err := e.db.Write.Exec(`DELETE FROM audit_checkpoints`); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ReadCheckpoint(ctx, e.db.Read, e.verifier); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Errorf("ReadCheckpoint with no checkpoint stored: %v, want ENOTFOUND", err)
	}
	if _, err := e.db.Write.Exec(`INSERT INTO audit_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, 0), ($4, $5, $6, 0)`,
		int64(first.Size), first.Root[:], first.Note, int64(latest.Size), latest.Root[:], latest.Note); err != nil {
		t.Fatal(err)
	}
	if latest.Size <= first.Size {
		t.Fatalf("second checkpoint size %d, first %d", latest.Size, first.Size)
	}
	got, err := audit.ReadCheckpoint(ctx, e.db.Read, e.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != latest.Size || got.Root != latest.Root || !bytes.Equal(got.Note, latest.Note) {
		t.Errorf("ReadCheckpoint = size %d root %s, want the latest, size %d root %s", got.Size, got.Root, latest.Size, latest.Root)
	}
	_, otherKey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	other, err := note.NewVerifier(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ReadCheckpoint(ctx, e.db.Read, other); err == nil {
		t.Errorf("ReadCheckpoint accepted a checkpoint under another key")
	}
}

// TestReadProof proves entries from the database alone, as custos log
// proof does: the proof verifies offline and carries the entry's body; an
// index beyond the checkpoint and a rewritten entry are refused.
func TestReadProof(t *testing.T) {
	ctx := context.Background()
	e := newLog(t)
	e.append(t, 300, "tn_a", "tn_b") // more than one tile
	cp := e.sign(t)
	for _, index := range []uint64{0, 17, 255, 256, cp.Size - 1} {
		p, got, err := audit.ReadProof(ctx, e.db.Read, e.verifier, index)
		if err != nil {
			t.Fatalf("ReadProof(%d): %v", index, err)
		}
		if got.Size != cp.Size || got.Root != cp.Root {
			t.Errorf("ReadProof(%d) against size %d, want the latest checkpoint's %d", index, got.Size, cp.Size)
		}
		q, err := audit.ParseProof(p.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Verify(e.verifier); err != nil {
			t.Errorf("proof of %d does not verify offline: %v", index, err)
		}
		entries, err := e.log.Entries(ctx, index, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(q.Body(), entries[0].Data) || q.Index != index {
			t.Errorf("proof of %d carries entry %d %s, want %s", index, q.Index, q.Body(), entries[0].Data)
		}
	}
	if _, _, err := audit.ReadProof(ctx, e.db.Read, e.verifier, cp.Size); custos.ErrorCode(err) != custos.EINVALID {
		t.Errorf("ReadProof beyond the checkpoint: %v, want EINVALID", err)
	}

	// A body rewritten with a matching commitment opens its leaf, but the
	// leaf is not the one in the signed tree.
	e.log.Close()
	q := `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = 17`
	if _, err := e.db.Write.Exec(q, tamperArgs(t, e, q)...); err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.ReadProof(ctx, e.db.Read, e.verifier, 17); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("ReadProof of a rewritten entry: %v, want ErrBadProof", err)
	}
	// A body that no longer opens its commitment.
	q = `UPDATE audit_leaves SET data = $1 WHERE idx = 18`
	if _, err := e.db.Write.Exec(q, tamperArgs(t, e, q)...); err != nil {
		t.Fatal(err)
	}
	var ve *audit.VerifyError
	if _, _, err := audit.ReadProof(ctx, e.db.Read, e.verifier, 18); !errors.As(err, &ve) || ve.Index != 18 {
		t.Errorf("ReadProof of an entry that does not open its leaf: %v, want a VerifyError at 18", err)
	}
}

package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
)

// This file is the log's read API for tools that hold a log's database
// but do not open the log (custos log checkpoint, custos log proof): no
// SQL on the audit tables lives outside this package.

// latestCheckpointNote returns the signed note of the largest checkpoint
// stored, ENOTFOUND if none is.
func latestCheckpointNote(ctx context.Context, q querier) ([]byte, error) {
	var msg []byte
	err := q.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custos.Errorf(custos.ENOTFOUND, "no checkpoint yet")
	} else if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	return msg, nil
}

// ReadCheckpoint returns the latest signed checkpoint in a log's
// database, verified with v: a note that does not verify is an error, not
// something to hand on. ENOTFOUND if the log has none yet.
//
// A v that is not a [KeyChain] is the log's first key: the transitions
// stored in the database are followed from it ([LoadKeyChain]; each must
// be signed by the key it retires), so a rotated log reads with log.pub.
func ReadCheckpoint(ctx context.Context, read *sql.DB, v note.Verifier) (*Checkpoint, error) {
	msg, err := latestCheckpointNote(ctx, read)
	if err != nil {
		return nil, err
	}
	if v, err = chainFor(ctx, read, v); err != nil {
		return nil, err
	}
	return ParseCheckpoint(msg, v)
}

// chainFor is v, or the chain of keys stored in the database from v.
func chainFor(ctx context.Context, read *sql.DB, v note.Verifier) (note.Verifier, error) {
	if _, ok := v.(*KeyChain); ok {
		return v, nil
	}
	return LoadKeyChain(ctx, read, v)
}

// ReadProof proves, from a log's database, that the entry at index is in
// the tree of the latest checkpoint (verified with v). It checks what a
// tenant holding the checkpoint would: the entry's body and salt open its
// leaf ([ReadEntry]) and the inclusion proof, built from the stored tiles,
// leads from that leaf to the checkpoint's root. The [Proof] is
// self-contained: [Proof.Marshal] writes it for [Proof.Verify] anywhere.
// An index the checkpoint does not cover is EINVALID.
func ReadProof(ctx context.Context, read *sql.DB, v note.Verifier, index uint64) (*Proof, *Checkpoint, error) {
	cp, err := ReadCheckpoint(ctx, read, v)
	if err != nil {
		return nil, nil, err
	}
	p, err := ReadProofAt(ctx, read, cp, index)
	return p, cp, err
}

// ReadProofAt is [ReadProof] against a given checkpoint of the log (one
// the witnesses cosigned, say), not necessarily the latest.
func ReadProofAt(ctx context.Context, read *sql.DB, cp *Checkpoint, index uint64) (*Proof, error) {
	if index >= cp.Size {
		return nil, custos.Errorf(custos.EINVALID, "entry %d is not covered by the checkpoint (size %d)", index, cp.Size)
	}
	e, err := ReadEntry(ctx, read, index)
	if err != nil {
		return nil, fmt.Errorf("read entry %d: %w", index, err)
	}
	hashes, err := tlog.ProveRecord(int64(cp.Size), int64(index), newTileCache().reader(ctx, read, nil))
	if err != nil {
		return nil, fmt.Errorf("inclusion proof of entry %d: %w", index, err)
	}
	if err := tlog.CheckRecord(hashes, int64(cp.Size), cp.Root, int64(index), tlog.RecordHash(e.Leaf)); err != nil {
		return nil, fmt.Errorf("%w: entry %d against checkpoint size %d", ErrBadProof, index, cp.Size)
	}
	return &Proof{Entry: e.Opening(), Index: index, Hashes: hashes, Checkpoint: cp.Note}, nil
}

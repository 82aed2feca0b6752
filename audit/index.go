package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
)

// The log is indexed by principal, key and source network as the
// sequencer writes it: audit_leaves carries, beside each body, the
// actor's sequence number (actor_seq), the key (key_id) and the source
// address as 32 hex digits of its 16-byte form (source_key), so that a
// network is a range of keys. Every index column is derived from the
// body; [VerifyIndex] recomputes them, as [Verify] does in its pass over the entries. The index
// makes a blast-radius report read the subject's entries only, never the
// whole log.

// IsPrincipal reports whether actor is a principal ("pr_…"), whose entries
// carry [Leaf.ActorSeq]. "system", "anonymous" and "bootstrap" are not.
func IsPrincipal(actor string) bool { return strings.HasPrefix(actor, "pr_") }

// SourceKey returns the index key of a source address: 32 lowercase hex
// digits of its 16-byte form (IPv4 as IPv4-mapped IPv6), or "" if source
// is not an IP address.
func SourceKey(source string) string {
	a, err := netip.ParseAddr(source)
	if err != nil {
		return ""
	}
	b := a.As16() // IPv4 as IPv4-mapped: one key space for both
	return hex.EncodeToString(b[:])
}

// sourceRange returns the first and last index keys of a network.
func sourceRange(p netip.Prefix) (lo, hi string) {
	p = p.Masked()
	a := p.Addr()
	bits := p.Bits()
	if a.Is4() {
		bits += 96
	}
	first := a.As16()
	last := first
	for i := bits; i < 128; i++ {
		last[i/8] |= 1 << (7 - i%8)
	}
	return hex.EncodeToString(first[:]), hex.EncodeToString(last[:])
}

// Subject selects the entries of a blast-radius query: exactly one field
// is set.
type Subject struct {
	Principal string
	Key       string
	Source    netip.Prefix // valid when set
	Tenant    string
}

func (q Subject) where() (string, []any, error) {
	n := 0
	var cond string
	var args []any
	if q.Principal != "" {
		n++
		cond, args = `actor = $1`, []any{q.Principal}
	}
	if q.Key != "" {
		n++
		cond, args = `key_id = $1`, []any{q.Key}
	}
	if q.Source.IsValid() {
		n++
		lo, hi := sourceRange(q.Source)
		cond, args = `source_key >= $1 AND source_key <= $2`, []any{lo, hi}
	}
	if q.Tenant != "" {
		n++
		cond, args = `tenant_id = $1`, []any{q.Tenant}
	}
	if n != 1 {
		return "", nil, fmt.Errorf("subject: exactly one of principal, key, source and tenant is needed")
	}
	return cond, args, nil
}

// SubjectEntries returns the entries of subject q below index size (a
// checkpoint's size), in index order, each checked against its
// commitment; whether a commitment is in the tree is for an inclusion
// proof to say. Entries written before the index existed are found by
// principal and tenant only.
//
// A large log is read in contiguous ranges of indexes on as many
// connections as there are cores (subjectWorkers at most), each range's
// entries checked by its own goroutine: reading and checking 100 000
// entries was the largest serial part of a blast-radius report
// (docs/benchmarks.md (ae)).
func (l *Log) SubjectEntries(ctx context.Context, q Subject, size uint64) ([]Stored, error) {
	cond, args, err := q.where()
	if err != nil {
		return nil, err
	}
	workers := 1
	if size >= subjectSplit {
		workers = min(runtime.GOMAXPROCS(0), subjectWorkers)
	}
	parts := make([][]Stored, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := size*uint64(w)/uint64(workers), size*uint64(w+1)/uint64(workers)
		wg.Go(func() {
			parts[w], errs[w] = l.subjectRange(ctx, cond, args, lo, hi)
		})
	}
	wg.Wait()
	for _, err := range errs { // the first in index order, as one reader would have met it
		if err != nil {
			return nil, err
		}
	}
	return slices.Concat(parts...), nil
}

// subjectWorkers bounds SubjectEntries' parallel reads; subjectSplit is
// the smallest log they are worth splitting for. Variables so that tests
// can change them.
var (
	subjectWorkers        = 4
	subjectSplit   uint64 = 1 << 16
)

// subjectRange is SubjectEntries over the indexes lo…hi-1.
func (l *Log) subjectRange(ctx context.Context, cond string, args []any, lo, hi uint64) ([]Stored, error) {
	args = append(slices.Clip(args), int64(lo), int64(hi))
	query := selectStored + ` WHERE ` + cond + fmt.Sprintf(` AND idx >= $%d AND idx < $%d ORDER BY idx`, len(args)-1, len(args))
	rows, err := l.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read subject entries: %w", err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		s, err := scanStored(rows)
		if err != nil {
			return nil, fmt.Errorf("read subject entries: %w", err)
		}
		if err := s.check(); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read subject entries: %w", err)
	}
	return out, nil
}

// nextActorSeq is nextTenantSeq for a principal actor.
func (l *Log) nextActorSeq(ctx context.Context, tx *sql.Tx, actor string) (uint64, error) {
	last, ok := l.actorSeq[actor]
	if !ok {
		// A principal's sequence rises with the index, so its last entry
		// (the actor index's, read backwards) holds the largest; entries
		// from before the sequence existed hold none.
		var n sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT actor_seq FROM audit_leaves WHERE actor = $1 AND actor_seq IS NOT NULL ORDER BY idx DESC LIMIT 1`, actor).Scan(&n)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("actor sequence: %w", err)
		}
		last = uint64(n.Int64)
	}
	l.actorSeq[actor] = last + 1
	return last + 1, nil
}

// indexFields are the fields of a body the index is derived from.
type indexFields struct {
	Actor    string `json:"actor"`
	ActorSeq uint64 `json:"actor_seq"`
	KeyID    string `json:"key_id"`
	Source   string `json:"source"`
}

// VerifyIndex recomputes the index columns of every entry from its body
// and checks the stored ones, and that each principal's actor_seq runs
// 1, 2, … with no gap from its first sequenced entry. An entry written
// before the index existed (its body has no actor_seq, its index columns
// are NULL) is accepted only before the first sequenced entry of the log.
// A mismatch is a [*VerifyError] naming the first bad index.
func VerifyIndex(ctx context.Context, read *sql.DB) error {
	rows, err := read.QueryContext(ctx, `SELECT idx, actor, actor_seq, key_id, source_key, data FROM audit_leaves ORDER BY idx`)
	if err != nil {
		return fmt.Errorf("verify index: %w", err)
	}
	defer rows.Close()
	seqs := map[string]uint64{}
	sequenced := false
	for rows.Next() {
		var idx int64
		var actor string
		var seq sql.NullInt64
		var key, source sql.NullString
		var data []byte
		if err := rows.Scan(&idx, &actor, &seq, &key, &source, &data); err != nil {
			return fmt.Errorf("verify index: %w", err)
		}
		var f indexFields
		if err := json.Unmarshal(data, &f); err != nil {
			return &VerifyError{Index: uint64(idx), Reason: "leaf is not JSON"}
		}
		if err := checkIndexRow(uint64(idx), actor, seq, key, source, &f, seqs, &sequenced); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify index: %w", err)
	}
	return nil
}

// checkIndexRow checks one entry's index columns against its body's
// fields f, and its principal's sequence against seqs (the last actor_seq
// of each principal so far). sequenced says whether a sequenced entry was
// seen: from then on every entry is indexed.
func checkIndexRow(n uint64, actor string, seq sql.NullInt64, key, source sql.NullString, f *indexFields, seqs map[string]uint64, sequenced *bool) error {
	if f.Actor != actor {
		return &VerifyError{Index: n, Reason: "leaf row's actor column does not match its data"}
	}
	legacy := !*sequenced && f.ActorSeq == 0 && !seq.Valid && !key.Valid && !source.Valid
	if legacy {
		return nil
	}
	if f.ActorSeq != 0 {
		*sequenced = true
	}
	if uint64(seq.Int64) != f.ActorSeq || seq.Valid != (f.ActorSeq != 0) || key.String != f.KeyID || key.Valid != (f.KeyID != "") ||
		source.String != SourceKey(f.Source) || source.Valid != (SourceKey(f.Source) != "") {
		return &VerifyError{Index: n, Reason: "leaf row's index columns (actor_seq, key_id, source_key) do not match its data"}
	}
	if IsPrincipal(f.Actor) != (f.ActorSeq != 0) {
		if f.ActorSeq != 0 || *sequenced {
			return &VerifyError{Index: n, Reason: "actor sequence number missing or on an entry whose actor is not a principal"}
		}
		return nil
	}
	if f.ActorSeq == 0 {
		return nil
	}
	// A principal's sequence starts at 1 whatever it did before the
	// index existed.
	if want := seqs[f.Actor] + 1; f.ActorSeq != want {
		return &VerifyError{Index: n, Reason: fmt.Sprintf("actor sequence gap: actor_seq %d where %d was due", f.ActorSeq, want)}
	}
	seqs[f.Actor] = f.ActorSeq
	return nil
}

// Prover returns a function proving entries in the tree of size, all
// through one [proofReader] (a report proves thousands of entries of one
// tree, and their proofs share most of their hashes).
func (l *Log) Prover(ctx context.Context, size uint64) (func(index uint64) (tlog.RecordProof, error), error) {
	if err := l.reach(ctx, size); err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	if size > l.Size() {
		return nil, custos.Errorf(custos.EINVALID, "size must be at most the log size %d", l.Size())
	}
	r := newProofReader(ctx, l.r)
	return func(index uint64) (tlog.RecordProof, error) {
		if index >= size {
			return nil, custos.Errorf(custos.EINVALID, "index must be below size")
		}
		return tlog.ProveRecord(int64(size), int64(index), r)
	}, nil
}

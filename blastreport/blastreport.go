// Package blastreport builds and verifies proven blast-radius reports
// ([custos.BlastReport]).
//
// A report carries the subject's log entries — each as its opening (body
// and salt) with an inclusion proof against one signed checkpoint — and
// the facts derived from them. [Verify] checks everything offline with the
// log's public key: the checkpoint's signature, that every entry's
// commitment is recomputed from its opening ([audit.LeafOf]) and proven in
// the checkpoint's tree (golang.org/x/mod/sumdb/tlog), that every entry
// belongs to the subject, that the facts are exactly those the entries
// give, and, for a principal or a tenant, that the entries cover the
// subject's sequence (actor_seq or tenant_seq) with no gap up to the
// checkpoint. What completeness does and does not prove is in
// docs/blast-radius.md.
package blastreport

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// Entry is one of the subject's entries as the log returned it.
type Entry struct {
	Index   uint64
	Opening []byte // audit.Opening(body, salt)
}

// Prover returns the inclusion proofs of the entries at indexes
// (ascending) in the tree of the checkpoint's size, one per index, in
// order: [audit.Log.ProveAll].
type Prover func(indexes []uint64) ([]tlog.RecordProof, error)

// proveChunk is how many entries Build asks its Prover for at once: large
// enough for the Prover to share tiles and cores, small enough for a
// progress bar to move.
const proveChunk = 16384

// Build makes the report of q from all of the subject's entries below
// cp.Size, in index order. With a window it keeps the entries inside it
// and, for a subject with a sequence, the one just before and the one
// just after (when they exist), so that the report still proves it omits
// nothing in the window. progress, if set, hears how many entries are
// proven.
func Build(q custos.BlastQuery, cp *audit.Checkpoint, all []Entry, prove Prover, progress func(done, total int)) (*custos.BlastReport, error) {
	leaves, err := openAll(all)
	if err != nil {
		return nil, err
	}
	seq := sequenceOf(&q)
	lo, hi := 0, len(all)-1
	if !q.Since.IsZero() {
		for lo < len(all) && leaves[lo].Time.Before(q.Since) {
			lo++
		}
		if seq != "" && lo > 0 {
			lo--
		}
	}
	if !q.Until.IsZero() {
		for hi >= 0 && leaves[hi].Time.After(q.Until) {
			hi--
		}
		if seq != "" && hi < len(all)-1 {
			hi++
		}
	}
	r := &custos.BlastReport{
		Version:      custos.BlastReportVersion,
		Query:        q,
		Checkpoint:   string(cp.Note),
		Completeness: custos.BlastCompleteness{Sequence: seq, Complete: seq != ""},
		Entries:      make([]custos.BlastEntry, 0, max(hi-lo+1, 0)),
	}
	if seq != "" && len(all) > 0 {
		r.Completeness.Total = seqOf(seq, leaves[len(all)-1])
	}
	var kept []*audit.Leaf
	var idx []uint64
	for i := lo; i <= hi; i++ {
		kept, idx = append(kept, leaves[i]), append(idx, all[i].Index)
	}
	for from := 0; from < len(idx); from += proveChunk {
		to := min(from+proveChunk, len(idx))
		ps, err := prove(idx[from:to])
		if err != nil {
			return nil, fmt.Errorf("prove entries %d…%d: %w", idx[from], idx[to-1], err)
		}
		if len(ps) != to-from {
			return nil, fmt.Errorf("prove entries %d…%d: %d proofs for %d entries", idx[from], idx[to-1], len(ps), to-from)
		}
		// The chunk's proofs' hash slices are cut from one array, not
		// allocated entry by entry (100 000 allocations in a large report).
		n := 0
		for _, p := range ps {
			n += len(p)
		}
		slab := make([][]byte, n)
		for j, p := range ps {
			e := all[lo+from+j]
			hs := slab[:len(p):len(p)]
			slab = slab[len(p):]
			for k := range p {
				hs[k] = p[k][:]
			}
			r.Entries = append(r.Entries, custos.BlastEntry{Index: e.Index, Opening: e.Opening, Proof: hs})
		}
		if progress != nil {
			progress(to, len(idx))
		}
	}
	r.Facts = Facts(&q, idx, kept)
	return r, nil
}

// sequenceOf names the sequence that proves a report on q complete.
func sequenceOf(q *custos.BlastQuery) string {
	switch {
	case q.Principal != "":
		return "actor_seq"
	case q.Tenant != "":
		return "tenant_seq"
	}
	return ""
}

func seqOf(seq string, l *audit.Leaf) uint64 {
	if seq == "actor_seq" {
		return l.ActorSeq
	}
	return l.TenantSeq
}

// openAll decodes the bodies of all, in runs over the cores (100 000
// JSON bodies are a good part of a large report's time); the first error
// in index order is the one returned.
func openAll(all []Entry) ([]*audit.Leaf, error) {
	leaves := make([]*audit.Leaf, len(all))
	errs := make([]error, len(all))
	workers := min(runtime.GOMAXPROCS(0), max(len(all)/1024, 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := len(all) * w / workers; i < len(all)*(w+1)/workers; i++ {
				leaves[i], errs[i] = openEntry(all[i].Opening)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", all[i].Index, err)
		}
	}
	return leaves, nil
}

func openEntry(opening []byte) (*audit.Leaf, error) {
	body, _, err := audit.ParseOpening(opening)
	if err != nil {
		return nil, err
	}
	l := new(audit.Leaf)
	if err := json.Unmarshal(body, l); err != nil {
		return nil, errors.New("entry body is not an audit entry")
	}
	return l, nil
}

// Facts derives the facts of the entries (indexes idx, bodies leaves) that
// lie in q's window and concern a tenant or were refused: one fact per
// (tenant, list, token, principal, kind), in that order.
func Facts(q *custos.BlastQuery, idx []uint64, leaves []*audit.Leaf) []custos.BlastFact {
	type key struct{ tenant, list, token, principal, kind string }
	m := map[key]*custos.BlastFact{}
	add := func(k key, i uint64, l *audit.Leaf, contacts int) {
		f := m[k]
		if f == nil {
			f = &custos.BlastFact{Tenant: k.tenant, List: k.list, Token: k.token, Principal: k.principal, Kind: k.kind, First: l.Time, Last: l.Time}
			m[k] = f
		}
		if l.Time.Before(f.First) {
			f.First = l.Time
		}
		if l.Time.After(f.Last) {
			f.Last = l.Time
		}
		f.Contacts += contacts
		f.Entries = append(f.Entries, i)
	}
	for n, l := range leaves {
		if !q.InWindow(l.Time) || (l.Tenant == "" && l.Outcome == audit.OutcomeOK) {
			continue
		}
		kind := custos.AccessKind(l.Action, l.Outcome)
		if len(l.Tokens) == 0 {
			add(key{l.Tenant, l.List, "", l.Actor, kind}, idx[n], l, l.Count)
			continue
		}
		for _, t := range slices.Compact(slices.Sorted(slices.Values(l.Tokens))) {
			add(key{l.Tenant, l.List, t, l.Actor, kind}, idx[n], l, 0)
		}
	}
	out := make([]custos.BlastFact, 0, len(m))
	for _, f := range m {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b custos.BlastFact) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.List, b.List), cmp.Compare(a.Token, b.Token),
			cmp.Compare(a.Principal, b.Principal), cmp.Compare(a.Kind, b.Kind))
	})
	return out
}

// matches reports whether an entry belongs to the report's subject.
func matches(q *custos.BlastQuery, net netip.Prefix, l *audit.Leaf) bool {
	switch {
	case q.Principal != "":
		return l.Actor == q.Principal
	case q.Key != "":
		return l.KeyID == q.Key
	case q.Tenant != "":
		return l.Tenant == q.Tenant
	case q.Source != "":
		a, err := netip.ParseAddr(l.Source)
		return err == nil && (net.Contains(a) || net.Contains(a.Unmap()))
	}
	return false
}

// MaxBytes bounds a report file [Parse] accepts.
const MaxBytes = 1 << 30

// Parse decodes a report file. It checks the form only; [Verify] checks
// what the report claims.
func Parse(b []byte) (*custos.BlastReport, error) {
	if len(b) > MaxBytes {
		return nil, errors.New("blast-radius report: too large")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	r := new(custos.BlastReport)
	if err := d.Decode(r); err != nil {
		return nil, fmt.Errorf("blast-radius report: %w", err)
	}
	if d.More() {
		return nil, errors.New("blast-radius report: data after the report")
	}
	if r.Version != custos.BlastReportVersion {
		return nil, fmt.Errorf("blast-radius report: version must be %q", custos.BlastReportVersion)
	}
	if err := r.Query.Validate(); err != nil {
		return nil, fmt.Errorf("blast-radius report: query: %w", err)
	}
	for _, e := range r.Entries {
		if len(e.Proof) > 63 {
			return nil, fmt.Errorf("blast-radius report: entry %d: too many proof hashes", e.Index)
		}
		for _, h := range e.Proof {
			if len(h) != tlog.HashSize {
				return nil, fmt.Errorf("blast-radius report: entry %d: a proof hash is not %d bytes", e.Index, tlog.HashSize)
			}
		}
	}
	return r, nil
}

// ErrIncomplete is wrapped by a [Verify] error that found the report
// complete-claiming but missing entries of its subject.
var ErrIncomplete = errors.New("report is incomplete")

// Verify checks a report file with no server: see the package comment.
// It returns the report and its checkpoint.
func Verify(file []byte, v note.Verifier) (*custos.BlastReport, *audit.Checkpoint, error) {
	r, err := Parse(file)
	if err != nil {
		return nil, nil, err
	}
	if len(r.LogKeys) > 0 {
		// The log's key transitions, followed from v: one that does not
		// follow (forged, reordered, of another log) fails the report.
		chain := audit.NewKeyChain(v)
		for _, n := range r.LogKeys {
			if _, err := chain.Follow([]byte(n)); err != nil {
				return nil, nil, fmt.Errorf("blast-radius report: %w", err)
			}
		}
		v = chain
	}
	cp, err := audit.ParseCheckpoint([]byte(r.Checkpoint), v)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	var net netip.Prefix
	if r.Query.Source != "" {
		net, _ = r.Query.Network() // Parse validated it
	}
	leaves := make([]*audit.Leaf, len(r.Entries))
	idx := make([]uint64, len(r.Entries))
	for i, e := range r.Entries {
		if i > 0 && e.Index <= r.Entries[i-1].Index {
			return nil, nil, fmt.Errorf("entry %d: entries out of order or repeated", e.Index)
		}
		body, salt, err := audit.ParseOpening(e.Opening)
		if err != nil {
			return nil, nil, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		leaf, err := audit.LeafOf(body, salt)
		if err != nil {
			return nil, nil, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		proof := make(tlog.RecordProof, len(e.Proof))
		for j, h := range e.Proof {
			copy(proof[j][:], h)
		}
		if e.Index >= cp.Size {
			return nil, nil, fmt.Errorf("entry %d: beyond the checkpoint's size %d", e.Index, cp.Size)
		}
		if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(e.Index), tlog.RecordHash(leaf)); err != nil {
			return nil, nil, fmt.Errorf("entry %d: %w: not in the log of the checkpoint (size %d)", e.Index, audit.ErrBadProof, cp.Size)
		}
		l, err := openEntry(e.Opening)
		if err != nil {
			return nil, nil, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		if !matches(&r.Query, net, l) {
			return nil, nil, fmt.Errorf("entry %d: not an entry of the report's subject", e.Index)
		}
		if r.Part != nil && l.Tenant != r.Part.Tenant {
			return nil, nil, fmt.Errorf("entry %d: not of tenant %s, whose part this is", e.Index, r.Part.Tenant)
		}
		leaves[i], idx[i] = l, e.Index
	}
	if err := checkComplete(r, leaves); err != nil {
		return nil, nil, err
	}
	want, err := json.Marshal(Facts(&r.Query, idx, leaves))
	if err != nil {
		return nil, nil, err
	}
	got, err := json.Marshal(r.Facts)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(want, got) {
		return nil, nil, errors.New("the report's facts are not those its entries show")
	}
	return r, cp, nil
}

// checkComplete checks the report's completeness claim.
func checkComplete(r *custos.BlastReport, leaves []*audit.Leaf) error {
	c := r.Completeness
	want := sequenceOf(&r.Query)
	if r.Part != nil {
		want = ""
	}
	if c.Sequence != want || c.Complete != (want != "") {
		return fmt.Errorf("%w: a report on this subject must claim completeness by %q", ErrIncomplete, want)
	}
	if want == "" {
		return nil
	}
	var seqs []*audit.Leaf
	for _, l := range leaves {
		if seqOf(want, l) != 0 { // a principal's entries from before actor_seq existed have none
			seqs = append(seqs, l)
		}
	}
	if len(seqs) == 0 {
		if c.Total != 0 {
			return fmt.Errorf("%w: no entries, but %s runs to %d", ErrIncomplete, want, c.Total)
		}
		return nil
	}
	for i := 1; i < len(seqs); i++ {
		if a, b := seqOf(want, seqs[i-1]), seqOf(want, seqs[i]); b != a+1 {
			return fmt.Errorf("%w: %s jumps from %d to %d", ErrIncomplete, want, a, b)
		}
	}
	first, last := seqs[0], seqs[len(seqs)-1]
	if s := seqOf(want, first); s != 1 && (r.Query.Since.IsZero() || !first.Time.Before(r.Query.Since)) {
		return fmt.Errorf("%w: %s starts at %d, and that entry is not before the window", ErrIncomplete, want, s)
	}
	if s := seqOf(want, last); s != c.Total && (r.Query.Until.IsZero() || !last.Time.After(r.Query.Until)) {
		return fmt.Errorf("%w: %s ends at %d of %d, and that entry is not after the window", ErrIncomplete, want, s, c.Total)
	}
	if s := seqOf(want, last); s > c.Total {
		return fmt.Errorf("%w: %s reaches %d beyond the stated total %d", ErrIncomplete, want, s, c.Total)
	}
	return nil
}

// Split returns one report per tenant the report's facts name, holding
// only that tenant's entries and facts, proven against the same
// checkpoint: what a tenant can check alone. whole is the report's file,
// whose digest each part names. A part makes no completeness claim of its
// own (see docs/blast-radius.md).
func Split(r *custos.BlastReport, whole []byte) (map[string]*custos.BlastReport, error) {
	sum := sha256.Sum256(whole)
	parts := map[string]*custos.BlastReport{}
	for _, f := range r.Facts {
		if f.Tenant != "" && parts[f.Tenant] == nil {
			q := r.Query
			parts[f.Tenant] = &custos.BlastReport{Version: r.Version, Query: q, Checkpoint: r.Checkpoint, LogKeys: r.LogKeys,
				Part: &custos.BlastPart{Tenant: f.Tenant, Of: hex.EncodeToString(sum[:])}, Facts: []custos.BlastFact{}, Entries: []custos.BlastEntry{}}
		}
	}
	for _, e := range r.Entries {
		l, err := openEntry(e.Opening)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		if p := parts[l.Tenant]; p != nil {
			p.Entries = append(p.Entries, e)
		}
	}
	for _, f := range r.Facts {
		if p := parts[f.Tenant]; p != nil {
			p.Facts = append(p.Facts, f)
		}
	}
	return parts, nil
}

package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
)

// FeedEntry is one entry of a tenant's access feed: its body and the salt
// that opens the entry's leaf ([LeafOf]), where it is, and the proof that
// the leaf is in the tree of the feed's checkpoint. [CheckFeedEntry]
// recomputes the leaf from body and salt: a body changed anywhere between
// the sequencer and the tenant fails the proof.
type FeedEntry struct {
	TenantSeq uint64          `json:"tenant_seq"`
	Index     uint64          `json:"index"`
	Body      json.RawMessage `json:"body"`
	Salt      []byte          `json:"salt,omitempty"` // absent for a legacy entry, whose leaf is its body
	Proof     []tlog.Hash     `json:"proof"`
	// Shared, in a page whose proofs are shared ([ShareProofs]), is how
	// many hashes the proof has in common with the previous entry's, at
	// its end (the hashes nearest the root): Proof holds only the rest.
	Shared int `json:"shared,omitempty"`
}

// ShareProofs shortens the proofs of a page's entries in place: each
// entry after the first keeps only the hashes its proof does not share,
// at the end, with the previous entry's (those nearest the root, the same
// for entries close together), and says how many it shares. Successive
// entries of one tenant share most of their proofs, so a page is about
// half the bytes. [ExpandProof] undoes it on the client, which then
// checks the whole proof: a wrong count or hash fails the proof.
func ShareProofs(es []FeedEntry) {
	var prev []tlog.Hash
	for i := range es {
		full := es[i].Proof
		k := 0
		for k < len(full) && k < len(prev) && full[len(full)-1-k] == prev[len(prev)-1-k] {
			k++
		}
		es[i].Proof, es[i].Shared = full[:len(full)-k], k
		prev = full
	}
}

// ExpandProof returns the whole proof of an entry of a shared page, from
// its own hashes and the previous entry's whole proof (nil for the first
// of a page).
func ExpandProof(prev, own []tlog.Hash, shared int) ([]tlog.Hash, error) {
	if shared < 0 || shared > len(prev) {
		return nil, fmt.Errorf("%w: the entry shares %d proof hashes, the previous entry's proof has %d", ErrBadProof, shared, len(prev))
	}
	if len(own)+shared > 64 {
		return nil, fmt.Errorf("%w: a proof of %d hashes", ErrBadProof, len(own)+shared)
	}
	full := make([]tlog.Hash, 0, len(own)+shared)
	full = append(full, own...)
	return append(full, prev[len(prev)-shared:]...), nil
}

// Feed is a page of a tenant's access feed, every entry proved against
// Checkpoint (a signed note).
type Feed struct {
	Checkpoint []byte      `json:"checkpoint"`
	Entries    []FeedEntry `json:"entries"`
	// More is set when entries after the last one exist in this checkpoint.
	More bool `json:"more"`
	// PageProof, in a page asked for with a page proof
	// ([Log.TenantFeedPage]), proves all the entries at once (see
	// [CheckFeedPage]); the entries then carry no proof of their own.
	PageProof []byte `json:"page_proof,omitempty"`
}

// MaxFeedPage is the largest page TenantFeed returns.
const MaxFeedPage = 1000

// TenantFeed returns the tenant's entries with tenant_seq > after, in
// tenant_seq order, up to limit, each with an inclusion proof against the
// latest signed checkpoint, which it keeps ([Log.Keep]). Entries not yet
// in that checkpoint are left for a later call.
func (l *Log) TenantFeed(ctx context.Context, tenant string, after uint64, limit int) (*Feed, error) {
	return l.tenantFeed(ctx, tenant, after, limit, false)
}

// TenantFeedPage is [Log.TenantFeed] with one proof for the page
// (Feed.PageProof, checked by [CheckFeedPage]) instead of one per entry:
// each hash is sent once, and the client hashes each node once.
func (l *Log) TenantFeedPage(ctx context.Context, tenant string, after uint64, limit int) (*Feed, error) {
	return l.tenantFeed(ctx, tenant, after, limit, true)
}

func (l *Log) tenantFeed(ctx context.Context, tenant string, after uint64, limit int, page bool) (*Feed, error) {
	if limit <= 0 || limit > MaxFeedPage {
		limit = MaxFeedPage
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	// Entries the checkpoint covers must all be there to be proved: a
	// log truncated under its checkpoint is tampered with, not a 500.
	if err := l.checkHead(ctx, cp); err != nil {
		return nil, err
	}
	rows, err := l.r.QueryContext(ctx, `SELECT idx, tenant_seq, data, salt FROM audit_leaves
		WHERE tenant_id = $1 AND tenant_seq > $2 AND idx < $3 ORDER BY tenant_seq LIMIT $4`,
		tenant, int64(after), int64(cp.Size), limit+1)
	if err != nil {
		return nil, fmt.Errorf("tenant feed: %w", err)
	}
	// The tenant will hold this checkpoint: the vendor keeps its copy past
	// the retention horizon, so that the two can be compared.
	if err := l.Keep(ctx, cp.Size, KeptFeed); err != nil {
		return nil, err
	}
	f := &Feed{Checkpoint: cp.Note, Entries: []FeedEntry{}}
	for rows.Next() {
		var idx, seq int64
		var data, salt []byte
		if err := rows.Scan(&idx, &seq, &data, &salt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("tenant feed: %w", err)
		}
		if len(f.Entries) == limit {
			f.More = true
			break
		}
		f.Entries = append(f.Entries, FeedEntry{TenantSeq: uint64(seq), Index: uint64(idx), Body: data, Salt: salt})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tenant feed: %w", err)
	}
	// One reader for the page: the entries' proofs share most of their
	// hashes (all above the tiles the entries sit in), and proofReader
	// reads each tile once and rebuilds a tile's upper hashes once, so a
	// page costs O(log n) tile reads in all, not hash recomputation per
	// entry.
	if page {
		if len(f.Entries) == 0 {
			return f, nil
		}
		p, err := l.pageProof(ctx, cp.Size, f.Entries)
		if err != nil {
			l.cfg.Logger.Error("tenant feed: no page proof", "size", cp.Size, "err", err)
			return nil, custos.Errorf(custos.EUNAVAILABLE, "no page proof in the checkpoint of size %d: the stored tree does not cover the page", cp.Size)
		}
		f.PageProof = p
		for i := range f.Entries {
			f.Entries[i].Proof = []tlog.Hash{} // none of its own, as the API's schema says: an empty list
		}
		return f, nil
	}
	r := newProofReader(ctx, l.r)
	for i := range f.Entries {
		p, err := tlog.ProveRecord(int64(cp.Size), int64(f.Entries[i].Index), r)
		if err != nil {
			// The tree does not cover an entry its signed checkpoint does
			// (tiles cut back), or the database failed: either way no
			// proof can be served, and saying so beats a bare 500.
			l.cfg.Logger.Error("tenant feed: no inclusion proof", "index", f.Entries[i].Index, "size", cp.Size, "err", err)
			return nil, custos.Errorf(custos.EUNAVAILABLE, "no inclusion proof for entry %d in the checkpoint of size %d: the stored tree does not cover it", f.Entries[i].Index, cp.Size)
		}
		f.Entries[i].Proof = p
	}
	return f, nil
}

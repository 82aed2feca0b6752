package witness

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
)

// Policy is what a client requires of a checkpoint: cosignatures from at
// least Quorum of Witnesses, on top of the log's own signature.
type Policy struct {
	Witnesses []note.Verifier // cosignature/v1 verifiers, distinct names
	Quorum    int
}

// NewPolicy returns the policy "quorum of these witnesses". quorum must be
// between 1 and len(witnesses): a policy nobody can meet, or one met by
// nobody, is refused.
func NewPolicy(witnesses []note.Verifier, quorum int) (*Policy, error) {
	if len(witnesses) == 0 {
		return nil, errors.New("witness policy: no witnesses")
	}
	seen := map[string]bool{}
	for _, w := range witnesses {
		if seen[w.Name()] {
			return nil, fmt.Errorf("witness policy: witness %q is named twice", w.Name())
		}
		seen[w.Name()] = true
	}
	if quorum < 1 || quorum > len(witnesses) {
		return nil, fmt.Errorf("witness policy: quorum %d must be between 1 and the %d witnesses named", quorum, len(witnesses))
	}
	return &Policy{Witnesses: witnesses, Quorum: quorum}, nil
}

// Names returns the policy's witness names.
func (p *Policy) Names() []string {
	out := make([]string, len(p.Witnesses))
	for i, w := range p.Witnesses {
		out[i] = w.Name()
	}
	return out
}

// ErrNotEnoughCosignatures is what a checkpoint lacking the policy's
// quorum fails with. It is not evidence of tampering: the witnesses may
// lag, be down, or not have been asked. A fork, a rollback or a rewrite
// shows as such a checkpoint, or as a bad signature, or as an
// inconsistency with a checkpoint that was witnessed.
var ErrNotEnoughCosignatures = errors.New("not enough witness cosignatures")

// QuorumError says which witnesses did not cosign.
type QuorumError struct {
	Size    uint64
	Have    []string // witnesses whose valid cosignature is present
	Missing []string
	Quorum  int
}

func (e *QuorumError) Error() string {
	return fmt.Sprintf("%s: checkpoint of size %d has %d of the %d required (cosigned by: %s; missing: %s)",
		ErrNotEnoughCosignatures, e.Size, len(e.Have), e.Quorum, list(e.Have), list(e.Missing))
}

func (e *QuorumError) Unwrap() error { return ErrNotEnoughCosignatures }

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Cosignature is one witness's valid cosignature of a checkpoint.
type Cosignature struct {
	Witness string
	Time    time.Time // when the witness cosigned, as it says
}

// Check verifies msg as a checkpoint of the log logV signs and requires
// the policy's quorum of valid cosignatures on it. A bad log signature, or
// a cosignature line of a policy witness that does not verify, is an
// error of its own (the note was altered or forged); too few valid
// cosignatures is a [*QuorumError] (errors.Is ErrNotEnoughCosignatures).
// Cosignatures from keys the policy does not name are ignored.
func (p *Policy) Check(msg []byte, logV note.Verifier) (*audit.Checkpoint, []Cosignature, error) {
	cp, err := audit.ParseCheckpoint(msg, logV)
	if err != nil {
		return nil, nil, err
	}
	cosigs, err := p.Cosignatures(msg, logV)
	if err != nil {
		return nil, nil, err
	}
	if len(cosigs) < p.Quorum {
		e := &QuorumError{Size: cp.Size, Quorum: p.Quorum}
		for _, n := range p.Names() {
			if slices.ContainsFunc(cosigs, func(c Cosignature) bool { return c.Witness == n }) {
				e.Have = append(e.Have, n)
			} else {
				e.Missing = append(e.Missing, n)
			}
		}
		return cp, cosigs, e
	}
	return cp, cosigs, nil
}

// Cosignatures returns the valid cosignatures of the policy's witnesses on
// msg, a note the log's key logV signed. A line from a policy witness that
// does not verify is an error.
func (p *Policy) Cosignatures(msg []byte, logV note.Verifier) ([]Cosignature, error) {
	vs := append([]note.Verifier{logV}, p.Witnesses...)
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		return nil, fmt.Errorf("cosigned checkpoint: %w", err)
	}
	var out []Cosignature
	for _, s := range n.Sigs {
		i := slices.IndexFunc(p.Witnesses, func(w note.Verifier) bool { return w.Name() == s.Name && w.KeyHash() == s.Hash })
		if i < 0 || slices.ContainsFunc(out, func(c Cosignature) bool { return c.Witness == s.Name }) {
			continue // the log's own signature; or a second key of one name
		}
		t, err := fnote.CoSigV1Timestamp(s)
		if err != nil {
			return nil, fmt.Errorf("cosignature of %s: %w", s.Name, err)
		}
		out = append(out, Cosignature{Witness: s.Name, Time: t})
	}
	return out, nil
}

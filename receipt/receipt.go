// Package receipt builds and verifies deletion receipts: self-contained
// text files, checkable with no server, that a deletion was committed in
// the audit log.
//
// A receipt is two parts, one after the other:
//
//  1. a statement, a C2SP signed note signed with the log's key, naming
//     the receipt, the scope (tenant, list or contact), the ids, what was
//     destroyed (the digest of the tenant's or the list's keyset, the kind
//     of key-encryption key it was wrapped under, row counts by kind), the
//     time and the index of the deletion's audit entry;
//  2. a C2SP tlog-proof ([audit.Proof]) of that entry: its body and salt
//     (from which the leaf commitment is recomputed with [audit.Commit]),
//     its inclusion proof and a signed checkpoint covering it.
//
// [Verify] checks both signatures, the inclusion proof, and that the entry
// says what the statement says (its action, tenant, list, token, time,
// and a detail line that repeats the statement's summary): a receipt
// cannot claim more than the log committed to. What this proves, and what
// it cannot, is in docs/deletion.md.
package receipt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// header is the first line of a statement.
const header = "custos.dev/deletion-receipt/v1"

// proofHeader is the first line of the tlog-proof that follows it.
const proofHeader = "c2sp.org/tlog-proof@v1\n"

// keysHeader is the first line of a receipt's optional last section: the
// log key transition statements from the log's first key to the key that
// signed the receipt, oldest first, one per line in base64 (the form GET
// /log/key-transitions serves). A verifier holding only an older key
// follows them (audit.KeyChain: each must be signed by the key before it
// and by the key it names), so a receipt made after a rotation verifies
// with the key the tenant was first given.
const keysHeader = "custos.dev/log-key-transitions@v1\n"

// MaxBytes bounds a receipt file.
const MaxBytes = 192 << 10

// timeFormat is the statement's time: UTC, as the entry's body has it.
const timeFormat = time.RFC3339Nano

// Kinds of rows a statement counts, in the order they are written.
var Kinds = []string{"contacts", "lists", "canaries", "suppressions", "reveals", "keysets"}

// Statement is what a receipt states about a deletion.
type Statement struct {
	ID      string // rc_…
	Tenant  string
	Scope   string // custos.DeletionScope…
	List    string // list scope: the list
	Contact string // contact scope: the token
	// Keyset is "sha256:" and the hex SHA-256 of the destroyed wrapped
	// keyset: it names the keys without revealing them. A tenant scope
	// always names its keyset; a list scope names the list's own keyset,
	// or none for a legacy list (created before lists had keys: its
	// contacts were sealed under the tenant's keys, which live on); a
	// contact scope never does.
	Keyset string
	// KEK says who held the key-encryption key at the root of the
	// destroyed keyset's wrapping (a list's keyset is wrapped under its
	// tenant's, which the KEK wraps): "vendor-local" (a key file on the
	// vendor's machines), "vendor-kms:SCHEME" (a KMS key the vendor holds;
	// SCHEME is its URI's, e.g. hcvault) or "tenant-kms:SCHEME" (a KMS key
	// the tenant owns; reserved for issue 22, not issued yet). Only with a
	// Keyset; receipts issued before this field have none.
	KEK    string
	Counts map[string]int // rows removed by kind (Kinds); tenant scope: made unreadable, purged after (docs/deletion.md)
	Time   time.Time      // the entry's time
	Entry  uint64         // the index of the deletion's audit entry
}

// Action returns the audit action of the statement's scope.
func (s *Statement) Action() string {
	switch s.Scope {
	case custos.DeletionScopeTenant:
		return string(custos.ActionTenantDelete)
	case custos.DeletionScopeList:
		return string(custos.ActionListDelete)
	case custos.DeletionScopeContact:
		return string(custos.ActionContactDelete)
	}
	return ""
}

// Detail is the summary line the deletion's audit entry carries as its
// detail: written by the vault before the entry is sequenced, so the log
// commits to the receipt's id and everything it says was destroyed.
func (s *Statement) Detail() string {
	var b strings.Builder
	b.WriteString("receipt " + s.ID + " scope " + s.Scope)
	if s.Keyset != "" {
		b.WriteString(" keyset " + s.Keyset)
	}
	if s.KEK != "" {
		b.WriteString(" kek " + s.KEK)
	}
	for _, k := range Kinds {
		if n, ok := s.Counts[k]; ok {
			fmt.Fprintf(&b, " %s=%d", k, n)
		}
	}
	return b.String()
}

// Text returns the statement's note text.
func (s *Statement) Text() string {
	var b strings.Builder
	b.WriteString(header + "\n")
	b.WriteString("id " + s.ID + "\n")
	b.WriteString("tenant " + s.Tenant + "\n")
	b.WriteString("scope " + s.Scope + "\n")
	if s.List != "" {
		b.WriteString("list " + s.List + "\n")
	}
	if s.Contact != "" {
		b.WriteString("contact " + s.Contact + "\n")
	}
	if s.Keyset != "" {
		b.WriteString("keyset " + s.Keyset + "\n")
	}
	if s.KEK != "" {
		b.WriteString("kek " + s.KEK + "\n")
	}
	for _, k := range Kinds {
		if n, ok := s.Counts[k]; ok {
			fmt.Fprintf(&b, "count %s %d\n", k, n)
		}
	}
	b.WriteString("time " + s.Time.UTC().Format(timeFormat) + "\n")
	fmt.Fprintf(&b, "entry %d\n", s.Entry)
	return b.String()
}

// check validates the statement's fields.
func (s *Statement) check() error {
	switch {
	case !custos.ValidID(custos.PrefixReceipt, s.ID):
		return errors.New("malformed receipt id")
	case !custos.ValidID(custos.PrefixTenant, s.Tenant):
		return errors.New("malformed tenant id")
	case !custos.ValidDeletionScope(s.Scope):
		return errors.New("unknown scope")
	case (s.Scope == custos.DeletionScopeTenant) == (s.List != ""):
		return errors.New("list and contact scopes name their list, and only they")
	case s.List != "" && !custos.ValidID(custos.PrefixList, s.List):
		return errors.New("malformed list id")
	case (s.Scope == custos.DeletionScopeContact) != (s.Contact != ""):
		return errors.New("contact scope names its contact, and only it")
	case s.Contact != "" && !custos.ValidID(custos.PrefixContact, s.Contact):
		return errors.New("malformed contact token")
	case s.Scope == custos.DeletionScopeTenant && s.Keyset == "":
		return errors.New("tenant scope names its keyset")
	case s.Scope == custos.DeletionScopeContact && s.Keyset != "":
		return errors.New("contact scope destroys no keyset")
	case s.KEK != "" && s.Keyset == "":
		return errors.New("a KEK is named only with the keyset it wrapped")
	case s.KEK != "" && !ValidKEK(s.KEK):
		return errors.New("unknown KEK kind")
	}
	if s.Keyset != "" {
		h, ok := strings.CutPrefix(s.Keyset, "sha256:")
		if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != 32 || hex.EncodeToString(b) != h {
			return errors.New("malformed keyset digest")
		}
	}
	for k, n := range s.Counts {
		if !slices.Contains(Kinds, k) || n < 0 {
			return errors.New("unknown or negative count")
		}
	}
	return nil
}

// Sign returns the statement as a note signed by signer.
func Sign(s *Statement, signer note.Signer) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("receipt statement: %w", err)
	}
	return note.Sign(&note.Note{Text: s.Text()}, signer)
}

// Build returns a receipt file: the signed statement followed by the
// entry's proof. It checks that the proof's entry is the statement's.
func Build(s *Statement, signer note.Signer, p *audit.Proof) ([]byte, error) {
	if p.Index != s.Entry {
		return nil, fmt.Errorf("receipt: proof is of entry %d, statement names %d", p.Index, s.Entry)
	}
	if err := matchEntry(s, p.Body()); err != nil {
		return nil, err
	}
	signed, err := Sign(s, signer)
	if err != nil {
		return nil, err
	}
	return append(signed, p.Marshal()...), nil
}

// BuildWithKeys is [Build] followed by the log's key transition
// statements (the log's KeyChain Notes), if there are any.
func BuildWithKeys(s *Statement, signer note.Signer, p *audit.Proof, transitions [][]byte) ([]byte, error) {
	file, err := Build(s, signer, p)
	if err != nil || len(transitions) == 0 {
		return file, err
	}
	file = append(file, keysHeader...)
	for _, t := range transitions {
		file = base64.StdEncoding.AppendEncode(file, t)
		file = append(file, '\n')
	}
	if len(file) > MaxBytes {
		return nil, errors.New("receipt: too large")
	}
	return file, nil
}

// ParseText parses a statement's note text (after its signature was
// checked). It accepts only the canonical form [Statement.Text] writes.
func ParseText(text string) (*Statement, error) {
	lines := strings.Split(text, "\n")
	if len(lines) < 2 || lines[0] != header || lines[len(lines)-1] != "" {
		return nil, errors.New("receipt: not a deletion receipt statement")
	}
	s := &Statement{Counts: map[string]int{}}
	seen := map[string]bool{}
	for _, l := range lines[1 : len(lines)-1] {
		key, val, ok := strings.Cut(l, " ")
		if !ok || val == "" {
			return nil, errors.New("receipt: malformed statement line")
		}
		if key != "count" && seen[key] {
			return nil, fmt.Errorf("receipt: repeated %q line", key)
		}
		seen[key] = true
		switch key {
		case "id":
			s.ID = val
		case "tenant":
			s.Tenant = val
		case "scope":
			s.Scope = val
		case "list":
			s.List = val
		case "contact":
			s.Contact = val
		case "keyset":
			s.Keyset = val
		case "kek":
			s.KEK = val
		case "count":
			kind, num, ok := strings.Cut(val, " ")
			n, err := strconv.Atoi(num)
			if !ok || err != nil || strconv.Itoa(n) != num {
				return nil, errors.New("receipt: malformed count line")
			}
			if _, dup := s.Counts[kind]; dup {
				return nil, fmt.Errorf("receipt: repeated count")
			}
			s.Counts[kind] = n
		case "time":
			t, err := time.Parse(timeFormat, val)
			if err != nil || !strings.HasSuffix(val, "Z") {
				return nil, errors.New("receipt: malformed time")
			}
			s.Time = t.UTC()
		case "entry":
			n, err := strconv.ParseUint(val, 10, 63)
			if err != nil || strconv.FormatUint(n, 10) != val {
				return nil, errors.New("receipt: malformed entry index")
			}
			s.Entry = n
		default:
			return nil, fmt.Errorf("receipt: unknown statement line")
		}
	}
	if !seen["time"] || !seen["entry"] {
		return nil, errors.New("receipt: statement lacks its time or entry")
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	if s.Text() != text {
		return nil, errors.New("receipt: statement is not in canonical form")
	}
	return s, nil
}

// Split cuts a receipt file into its signed statement and its proof.
func Split(file []byte) (statement, proof []byte, err error) {
	if len(file) > MaxBytes {
		return nil, nil, errors.New("receipt: too large")
	}
	i := bytes.Index(file, []byte("\n"+proofHeader))
	if i < 0 {
		return nil, nil, errors.New("receipt: no proof after the statement")
	}
	return file[:i+1], file[i+1:], nil
}

// Verify checks a receipt file with the log's verifier key and returns its
// statement and the checkpoint that covers the entry. It needs no server:
// the statement's signature, the checkpoint's signature, the inclusion of
// the entry (recomputed from its body and salt) under the checkpoint's
// root, and the agreement of the entry with the statement.
func Verify(file []byte, v note.Verifier) (*Statement, *audit.Checkpoint, error) {
	if len(file) > MaxBytes {
		return nil, nil, errors.New("receipt: too large")
	}
	if i := bytes.Index(file, []byte("\n"+keysHeader)); i >= 0 {
		// The log's key transitions, followed from v: a statement that
		// does not follow (forged, reordered, of another log) fails here.
		msgs, err := audit.ParseTransitionList(file[i+1+len(keysHeader):])
		if err != nil {
			return nil, nil, fmt.Errorf("receipt: %w", err)
		}
		if len(msgs) == 0 {
			return nil, nil, errors.New("receipt: an empty log key transitions section")
		}
		for _, m := range msgs {
			if err := canonicalSignatures(m); err != nil {
				return nil, nil, fmt.Errorf("receipt: log key transition: %w", err)
			}
		}
		chain := audit.NewKeyChain(v)
		if err := chain.FollowAll(msgs); err != nil {
			return nil, nil, fmt.Errorf("receipt: %w", err)
		}
		file, v = file[:i+1], chain
	}
	sb, pb, err := Split(file)
	if err != nil {
		return nil, nil, err
	}
	// A key chain (a rotated log) answers for each of its keys; the
	// statement is bound to the entry and the checkpoint below.
	n, err := note.Open(sb, audit.VerifiersOf(v))
	if err != nil {
		return nil, nil, fmt.Errorf("receipt: statement signature: %w", err)
	}
	if err := canonicalSignatures(sb); err != nil {
		return nil, nil, fmt.Errorf("receipt: statement: %w", err)
	}
	s, err := ParseText(n.Text)
	if err != nil {
		return nil, nil, err
	}
	p, err := audit.ParseProof(pb)
	if err != nil {
		return nil, nil, fmt.Errorf("receipt: %w", err)
	}
	if err := canonicalSignatures(p.Checkpoint); err != nil {
		return nil, nil, fmt.Errorf("receipt: checkpoint: %w", err)
	}
	cp, err := p.Verify(v)
	if err != nil {
		return nil, nil, fmt.Errorf("receipt: %w", err)
	}
	if p.Index != s.Entry {
		return nil, nil, fmt.Errorf("receipt: proof is of entry %d, statement names %d", p.Index, s.Entry)
	}
	if err := matchEntry(s, p.Body()); err != nil {
		return nil, nil, err
	}
	return s, cp, nil
}

// matchEntry checks that the audit entry body says what s says.
func matchEntry(s *Statement, body []byte) error {
	if body == nil {
		return errors.New("receipt: proof carries no entry")
	}
	var l audit.Leaf
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return errors.New("receipt: entry is not an audit entry")
	}
	want := []string{}
	if s.Contact != "" {
		want = append(want, s.Contact)
	}
	switch {
	case l.Action != s.Action():
		return fmt.Errorf("receipt: entry is a %q, not the deletion's %q", l.Action, s.Action())
	case l.Outcome != audit.OutcomeOK:
		return errors.New("receipt: entry records a deletion that failed")
	case l.Tenant != s.Tenant:
		return errors.New("receipt: entry is of another tenant")
	case l.List != s.List:
		return errors.New("receipt: entry is of another list")
	case !slices.Equal(append([]string{}, l.Tokens...), want):
		return errors.New("receipt: entry is of another contact")
	case l.Detail != s.Detail():
		return errors.New("receipt: entry's detail differs from the statement")
	case !l.Time.Equal(s.Time):
		return errors.New("receipt: entry's time differs from the statement's")
	}
	return nil
}

// FromEntry returns the statement a deletion's audit entry (its JSON
// body, at index) makes: the receipt id, scope, keyset digest and counts
// from its detail ([Statement.Detail]), the ids and time from its fields.
func FromEntry(body []byte, index uint64) (*Statement, error) {
	var l audit.Leaf
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, errors.New("receipt: entry is not an audit entry")
	}
	s := &Statement{Tenant: l.Tenant, Time: l.Time.UTC(), Entry: index, Counts: map[string]int{}}
	f := strings.Fields(l.Detail)
	if len(f) < 4 || f[0] != "receipt" || f[2] != "scope" {
		return nil, errors.New("receipt: entry is not a deletion with a receipt")
	}
	s.ID, s.Scope, f = f[1], f[3], f[4:]
	if len(f) >= 2 && f[0] == "keyset" {
		s.Keyset, f = f[1], f[2:]
	}
	if len(f) >= 2 && f[0] == "kek" {
		s.KEK, f = f[1], f[2:]
	}
	for _, kv := range f {
		k, num, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(num)
		if _, dup := s.Counts[k]; !ok || err != nil || dup {
			return nil, errors.New("receipt: malformed count in the entry")
		}
		s.Counts[k] = n
	}
	if s.Scope != custos.DeletionScopeTenant {
		s.List = l.List
	}
	if s.Scope == custos.DeletionScopeContact && len(l.Tokens) == 1 {
		s.Contact = l.Tokens[0]
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	if err := matchEntry(s, body); err != nil {
		return nil, err
	}
	return s, nil
}

// canonicalSignatures refuses a signed note whose signature lines are not
// in canonical base64: note.Open decodes them leniently, so without this
// a changed padding bit would leave a receipt verifying with other bytes.
func canonicalSignatures(msg []byte) error {
	_, sigs, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return errors.New("malformed signed note")
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(sigs), "\n"), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "—" {
			return errors.New("malformed signature line")
		}
		b, err := base64.StdEncoding.Strict().DecodeString(f[2])
		if err != nil || base64.StdEncoding.EncodeToString(b) != f[2] {
			return errors.New("signature not in canonical base64")
		}
	}
	return nil
}

// KEK kinds a statement may name ([Statement.KEK]).
const (
	KEKVendorLocal = "vendor-local" // a key file on the vendor's machines
	KEKVendorKMS   = "vendor-kms:"  // and the scheme: a KMS key the vendor holds
	KEKTenantKMS   = "tenant-kms:"  // and the scheme: a KMS key the tenant owns (BYOK; issue 22)
)

// ValidKEK reports whether k is a KEK kind a statement may name:
// [KEKVendorLocal], or [KEKVendorKMS] or [KEKTenantKMS] followed by a URI
// scheme of 1 to 32 lower-case letters, digits or '-', starting with a
// letter.
func ValidKEK(k string) bool {
	if k == KEKVendorLocal {
		return true
	}
	scheme, ok := strings.CutPrefix(k, KEKVendorKMS)
	if !ok {
		scheme, ok = strings.CutPrefix(k, KEKTenantKMS)
	}
	if !ok || len(scheme) == 0 || len(scheme) > 32 || scheme[0] < 'a' || scheme[0] > 'z' {
		return false
	}
	for _, c := range []byte(scheme) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

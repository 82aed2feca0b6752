package receipt_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/receipt"
	"github.com/custos-dev/custos/vault"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// issue appends a tenant deletion's entry to a real log, among others,
// and builds its receipt as the vault does. Its statement names no KEK:
// the form of every receipt issued before statements had a kek line.
func issue(t testing.TB) ([]byte, note.Verifier, *vaulttest.Stack) {
	t.Helper()
	return issueStatement(t, &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: custos.NewID(custos.PrefixTenant), Scope: custos.DeletionScopeTenant,
		Keyset: "sha256:" + strings.Repeat("ab", 32), Counts: map[string]int{"contacts": 1000, "lists": 2, "keysets": 1}})
}

// issueStatement appends the deletion entry s describes to a real log,
// among others, and builds its receipt as the vault does.
func issueStatement(t testing.TB, s *receipt.Statement) ([]byte, note.Verifier, *vaulttest.Stack) {
	t.Helper()
	st := vaulttest.Open(t, vault.Options{})
	ctx := context.Background()
	var tokens []string
	if s.Contact != "" {
		tokens = []string{s.Contact}
	}
	for i := range 5 {
		if _, err := st.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: "filler", Outcome: audit.OutcomeOK, Count: i}}); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := st.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: s.Action(), Tenant: s.Tenant, List: s.List, Tokens: tokens, Outcome: audit.OutcomeOK, Count: s.Counts["contacts"], Detail: s.Detail()}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Queued {
		t.Skip("queued log: the receipt's index comes from the vault's feed search (vault tests)")
	}
	for range 3 {
		st.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: "filler", Outcome: audit.OutcomeOK}})
	}
	if _, err := st.Log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	idx := rec.Index
	p, _, err := audit.ReadProof(ctx, st.DB.Read, st.Verifier, idx)
	if err != nil {
		t.Fatal(err)
	}
	full, err := receipt.FromEntry(p.Body(), idx)
	if err != nil {
		t.Fatal(err)
	}
	file, err := receipt.Build(full, st.Signer, p)
	if err != nil {
		t.Fatal(err)
	}
	return file, st.Verifier, st
}

func TestVerify(t *testing.T) {
	file, v, st := issue(t)
	s, cp, err := receipt.Verify(file, v)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, file)
	}
	if s.Counts["contacts"] != 1000 || s.Scope != custos.DeletionScopeTenant || cp.Size < s.Entry+1 {
		t.Fatalf("statement %+v, checkpoint size %d", s, cp.Size)
	}

	// Every single byte changed fails (the whole file is covered by
	// the two signatures and the proof).
	for i := range file {
		bad := bytes.Clone(file)
		bad[i] ^= 0x01
		if _, _, err := receipt.Verify(bad, v); err == nil {
			t.Fatalf("byte %d changed (%q→%q): verified", i, file[i], bad[i])
		}
	}

	// Another log's key: neither the statement nor the checkpoint opens.
	_, other := vaulttest.LogKeys(t)
	if _, _, err := receipt.Verify(file, other); err == nil {
		t.Fatal("verified under another log's key")
	}
	// A statement and a checkpoint signed by another log (same origin
	// name, another key) over the same entry and proof fail too.
	signer2, _ := vaulttest.LogKeys(t)
	sb, pb, _ := receipt.Split(file)
	n, _ := note.Open(sb, note.VerifierList(v))
	resigned, _ := note.Sign(&note.Note{Text: n.Text}, signer2)
	p, _ := audit.ParseProof(pb)
	cn, _ := note.Open(p.Checkpoint, note.VerifierList(v))
	p.Checkpoint, _ = note.Sign(&note.Note{Text: cn.Text}, signer2)
	if _, _, err := receipt.Verify(append(resigned, p.Marshal()...), v); err == nil {
		t.Fatal("verified with another log's signatures")
	}
	// A checkpoint of this log that does not cover the entry: an older
	// one, proof unchanged.
	p, _ = audit.ParseProof(pb)
	lines := strings.SplitN(cn.Text, "\n", 3)
	old, _ := note.Sign(&note.Note{Text: lines[0] + "\n1\n" + strings.SplitN(lines[2], "\n", 2)[0] + "\n"}, st.Signer)
	p.Checkpoint = old
	if _, _, err := receipt.Verify(append(bytes.Clone(sb), p.Marshal()...), v); err == nil {
		t.Fatal("verified against a checkpoint that does not cover the entry")
	}
	// A forged proof: one hash replaced, or the entry's index moved.
	p, _ = audit.ParseProof(pb)
	p.Hashes[0][0] ^= 1
	if _, _, err := receipt.Verify(append(bytes.Clone(sb), p.Marshal()...), v); err == nil {
		t.Fatal("verified with a forged inclusion proof")
	}
	p, _ = audit.ParseProof(pb)
	p.Index++
	if _, _, err := receipt.Verify(append(bytes.Clone(sb), p.Marshal()...), v); err == nil {
		t.Fatal("verified with the proof of another index")
	}
	// A statement claiming more than the entry says, signed by the log's
	// own key (a vault bug or a key holder's lie), does not match the
	// entry the log committed to.
	lie := strings.Replace(n.Text, "count contacts 1000", "count contacts 999", 1)
	forged, _ := note.Sign(&note.Note{Text: lie}, st.Signer)
	if _, _, err := receipt.Verify(append(forged, pb...), v); err == nil || !strings.Contains(err.Error(), "detail") {
		t.Fatalf("statement disagreeing with its entry: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	if storetest.Engine() != storetest.SQLite {
		f.Skip("one engine is enough to fuzz the parser")
	}
	file, v, _ := issue(f)
	f.Add(file)
	f.Add([]byte("custos.dev/deletion-receipt/v1\nid x\n\n— a b\nc2sp.org/tlog-proof@v1\nindex 0\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _, err := receipt.Verify(b, v)
		if err == nil && (s == nil || !bytes.Contains(b, []byte(s.Text()))) {
			t.Fatalf("verified without its statement")
		}
		receipt.ParseText(string(b))
	})
}

// TestListKeysetReceipt: a list's deletion that destroyed the list's own
// keyset names it and the kind of KEK at the root of its wrapping; the
// statement verifies, and a statement that drops or changes either line —
// even one signed with the log's key — does not match its entry.
func TestListKeysetReceipt(t *testing.T) {
	s := &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: custos.NewID(custos.PrefixTenant), Scope: custos.DeletionScopeList,
		List: custos.NewID(custos.PrefixList), Keyset: "sha256:" + strings.Repeat("cd", 32), KEK: receipt.KEKVendorKMS + "hcvault",
		Counts: map[string]int{"contacts": 12, "lists": 1, "canaries": 3, "suppressions": 0, "keysets": 1}}
	file, v, st := issueStatement(t, s)
	got, _, err := receipt.Verify(file, v)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, file)
	}
	if got.Keyset != s.Keyset || got.KEK != s.KEK || got.Counts["keysets"] != 1 || got.List != s.List {
		t.Fatalf("statement %+v; want the list's keyset and KEK kind", got)
	}
	if !bytes.Contains(file, []byte("\nkeyset "+s.Keyset+"\nkek vendor-kms:hcvault\n")) {
		t.Fatalf("receipt does not state the keyset and the KEK kind in plain text:\n%s", file)
	}
	sb, pb, _ := receipt.Split(file)
	n, _ := note.Open(sb, note.VerifierList(v))
	for name, lie := range map[string]string{
		"kek claims the tenant's KMS": strings.Replace(n.Text, "kek vendor-kms:hcvault", "kek tenant-kms:hcvault", 1),
		"kek dropped":                 strings.Replace(n.Text, "kek vendor-kms:hcvault\n", "", 1),
		"keyset changed":              strings.Replace(n.Text, "cdcd", "cdce", 1),
	} {
		forged, _ := note.Sign(&note.Note{Text: lie}, st.Signer)
		if _, _, err := receipt.Verify(append(forged, pb...), v); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// TestStatementRules: which scopes may name a keyset and a KEK, and which
// KEK kinds a statement may state.
func TestStatementRules(t *testing.T) {
	base := func(scope string) *receipt.Statement {
		s := &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: custos.NewID(custos.PrefixTenant), Scope: scope, Counts: map[string]int{}}
		if scope != custos.DeletionScopeTenant {
			s.List = custos.NewID(custos.PrefixList)
		}
		if scope == custos.DeletionScopeContact {
			s.Contact = custos.NewID(custos.PrefixContact)
		}
		return s
	}
	digest := "sha256:" + strings.Repeat("01", 32)
	for _, c := range []struct {
		name        string
		scope       string
		keyset, kek string
		ok          bool
	}{
		{"tenant, keyset and KEK", custos.DeletionScopeTenant, digest, receipt.KEKVendorLocal, true},
		{"tenant, keyset, no KEK (older receipts)", custos.DeletionScopeTenant, digest, "", true},
		{"tenant without keyset", custos.DeletionScopeTenant, "", "", false},
		{"list with its keyset", custos.DeletionScopeList, digest, "vendor-kms:aws-kms", true},
		{"legacy list, no keyset", custos.DeletionScopeList, "", "", true},
		{"KEK without keyset", custos.DeletionScopeList, "", receipt.KEKVendorLocal, false},
		{"contact with a keyset", custos.DeletionScopeContact, digest, "", false},
		{"tenant-owned KMS", custos.DeletionScopeTenant, digest, "tenant-kms:gcp-kms", true},
		{"unknown KEK kind", custos.DeletionScopeTenant, digest, "vendor-hsm", false},
		{"KMS without scheme", custos.DeletionScopeTenant, digest, "vendor-kms:", false},
		{"scheme with upper case", custos.DeletionScopeTenant, digest, "vendor-kms:HCVault", false},
		{"scheme with a space", custos.DeletionScopeTenant, digest, "vendor-kms:a b", false},
	} {
		s := base(c.scope)
		s.Keyset, s.KEK = c.keyset, c.kek
		s.Time, s.Entry = time.Now().UTC(), 7
		_, err := receipt.ParseText(s.Text())
		if (err == nil) != c.ok {
			t.Errorf("%s: parse %v, want ok %v\n%s", c.name, err, c.ok, s.Text())
		}
	}
}

// FuzzParseText: the statement parser takes any text without panicking,
// and what it accepts it writes back byte for byte.
func FuzzParseText(f *testing.F) {
	valid := &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: custos.NewID(custos.PrefixTenant), Scope: custos.DeletionScopeList,
		List: custos.NewID(custos.PrefixList), Keyset: "sha256:" + strings.Repeat("ab", 32), KEK: receipt.KEKVendorLocal,
		Counts: map[string]int{"contacts": 3, "keysets": 1}, Time: time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC), Entry: 4}
	if _, err := receipt.ParseText(valid.Text()); err != nil {
		f.Fatalf("seed statement: %v", err)
	}
	f.Add(valid.Text())
	f.Add("custos.dev/deletion-receipt/v1\nkek tenant-kms:x\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := receipt.ParseText(text)
		if err == nil && s.Text() != text {
			t.Fatalf("accepted a non-canonical statement")
		}
	})
}

// TestVerifyAfterLogKeyRotation: a receipt issued after two rotations of
// the log's signing key carries the transition statements, and verifies
// with the log's FIRST key alone. Without them it does not; with one
// changed, dropped, reordered, or replaced by a statement a foreign key
// signed, it does not either.
func TestVerifyAfterLogKeyRotation(t *testing.T) {
	st := vaulttest.Open(t, vault.Options{})
	ctx := context.Background()
	signer := st.Signer
	for range 2 {
		skey, vkey, err := audit.GenerateKey(vaulttest.Origin)
		if err != nil {
			t.Fatal(err)
		}
		next, _ := note.NewSigner(skey)
		if _, err := st.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: "filler", Outcome: audit.OutcomeOK}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Log.RotateKey(ctx, next, vkey, audit.Leaf{Actor: "system"}, nil); err != nil {
			if errors.Is(err, audit.ErrNotSequencer) {
				t.Skip("queued log: this node does not sequence (vault tests rotate on the leader)")
			}
			t.Fatal(err)
		}
		signer = next
	}
	s := &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: custos.NewID(custos.PrefixTenant), Scope: custos.DeletionScopeTenant,
		Keyset: "sha256:" + strings.Repeat("cd", 32), Counts: map[string]int{"contacts": 3, "lists": 1, "keysets": 1}}
	rec, err := st.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: s.Action(), Tenant: s.Tenant, Outcome: audit.OutcomeOK, Count: 3, Detail: s.Detail()}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Queued {
		t.Skip("queued log")
	}
	if _, err := st.Log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	chain := st.Log.Keys()
	p, _, err := audit.ReadProof(ctx, st.DB.Read, chain, rec.Index)
	if err != nil {
		t.Fatal(err)
	}
	full, err := receipt.FromEntry(p.Body(), rec.Index)
	if err != nil {
		t.Fatal(err)
	}
	notes := chain.Notes()
	if len(notes) != 2 {
		t.Fatalf("%d transitions in the log's chain, want 2", len(notes))
	}
	file, err := receipt.BuildWithKeys(full, signer, p, notes)
	if err != nil {
		t.Fatal(err)
	}
	first := st.Verifier
	if _, _, err := receipt.Verify(file, first); err != nil {
		t.Fatalf("with the first key and the embedded transitions: %v\n%s", err, file)
	}
	bare, err := receipt.Build(full, signer, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := receipt.Verify(bare, first); err == nil {
		t.Fatal("a receipt signed after two rotations verified with the first key and no transitions")
	}
	foreignSigner, _ := vaulttest.LogKeys(t)
	_, fvkey, _ := audit.GenerateKey(vaulttest.Origin)
	foreign, err := audit.SignTransition(foreignSigner, foreignSigner, fvkey, 1, time.Now())
	if err == nil {
		for name, ts := range map[string][][]byte{
			"reordered":    {notes[1], notes[0]},
			"first only":   {notes[0]},
			"second only":  {notes[1]},
			"foreign":      {foreign, notes[1]},
			"foreign last": {notes[0], notes[1], foreign},
		} {
			f, err := receipt.BuildWithKeys(full, signer, p, ts)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := receipt.Verify(f, first); err == nil {
				t.Errorf("%s transitions: verified", name)
			}
		}
	}
	// Every byte of the transitions section matters.
	at := bytes.Index(file, []byte("custos.dev/log-key-transitions@v1"))
	for i := at; i < len(file); i++ {
		bad := bytes.Clone(file)
		bad[i] ^= 0x01
		if _, _, err := receipt.Verify(bad, first); err == nil {
			t.Fatalf("byte %d (%q) of the transitions section changed: verified", i, file[i])
		}
	}
}

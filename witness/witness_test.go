package witness_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/witness"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const origin = "custos.test/log"

// testWitness is a witness's key pair: its cosignature/v1 signer (from
// the formats library, as a witness signs) and its verifier key.
type testWitness struct {
	name   string
	signer note.Signer
	vkey   string
}

func newWitness(t testing.TB, name string) testWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	return testWitness{name, s, vkey}
}

// line is the witness's cosignature line of a checkpoint note, as its
// add-checkpoint answer carries it.
func (w testWitness) line(t testing.TB, cp []byte) string {
	t.Helper()
	text, _, _ := bytes.Cut(cp, []byte("\n\n"))
	signed, err := note.Sign(&note.Note{Text: string(text) + "\n"}, w.signer)
	if err != nil {
		t.Fatal(err)
	}
	_, sig, _ := bytes.Cut(signed, []byte("\n\n"))
	return strings.TrimSuffix(string(sig), "\n")
}

func (w testWitness) verifier(t testing.TB) note.Verifier {
	t.Helper()
	v, err := witness.ParseKey(w.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func openLog(t *testing.T) (*audit.Log, note.Verifier) {
	t.Helper()
	db := storetest.Open(t)
	skey, vkey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	lg, err := audit.Open(context.Background(), db.Read, db.Write, audit.Config{Origin: origin, Signer: signer, Verifier: v, Placeholders: db.Placeholders, VerifyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return lg, v
}

func grow(t *testing.T, lg *audit.Log, n int) *audit.Checkpoint {
	t.Helper()
	ctx := context.Background()
	for range n {
		if _, err := lg.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: "test", Outcome: audit.OutcomeOK}}); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := lg.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestCosignedCheckpoint: the checkpoint served is the newest one the
// quorum cosigned, with the cosignatures of the configured witnesses; the
// policy accepts it. Run on both engines.
func TestCosignedCheckpoint(t *testing.T) {
	ctx := context.Background()
	lg, logV := openLog(t)
	w1, w2, other := newWitness(t, "w1.test"), newWitness(t, "w2.test"), newWitness(t, "other.test")
	names := []string{w1.name, w2.name}
	policy, err := witness.NewPolicy([]note.Verifier{w1.verifier(t), w2.verifier(t)}, 2)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing cosigned: the newest checkpoint, with no line; the policy
	// reports too few cosignatures.
	first := grow(t, lg, 3)
	cp, err := lg.CosignedCheckpoint(ctx, names, 2)
	if err != nil || cp.Size != first.Size {
		t.Fatalf("nothing cosigned: %v, %v", cp, err)
	}
	if _, _, err := policy.Check(cp.Note, logV); !errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("uncosigned checkpoint: %v", err)
	}

	for _, w := range []testWitness{w1, w2, other} {
		if err := lg.AddCosignature(ctx, first.Size, w.name, w.line(t, first.Note)); err != nil {
			t.Fatal(err)
		}
	}
	second := grow(t, lg, 2)
	if err := lg.AddCosignature(ctx, second.Size, w1.name, w1.line(t, second.Note)); err != nil {
		t.Fatal(err)
	}
	grow(t, lg, 1) // newest, cosigned by nobody

	cp, err = lg.CosignedCheckpoint(ctx, names, 2)
	if err != nil || cp.Size != first.Size {
		t.Fatalf("quorum 2: size %v, %v; want %d", cp, err, first.Size)
	}
	got, cosigs, err := policy.Check(cp.Note, logV)
	if err != nil || got.Root != first.Root || len(cosigs) != 2 {
		t.Fatalf("policy on the served checkpoint: %v %v", cosigs, err)
	}
	if strings.Contains(string(cp.Note), other.name) {
		t.Fatalf("a witness not configured is served:\n%s", cp.Note)
	}
	cp, err = lg.CosignedCheckpoint(ctx, names, 1)
	if err != nil || cp.Size != second.Size {
		t.Fatalf("quorum 1: %v, %v; want size %d", cp, err, second.Size)
	}
	sizes, err := lg.CosignedSizes(ctx)
	if err != nil || sizes[w1.name].Size != second.Size || sizes[w2.name].Size != first.Size || sizes[w1.name].At.IsZero() {
		t.Fatalf("cosigned sizes %v, %v", sizes, err)
	}

	// A cosignature of another checkpoint stored under this size (the
	// database is not trusted): the served note fails the policy as a
	// bad signature.
	third := grow(t, lg, 1)
	for _, w := range []testWitness{w1, w2} {
		if err := lg.AddCosignature(ctx, third.Size, w.name, w.line(t, first.Note)); err != nil {
			t.Fatal(err)
		}
	}
	cp, err = lg.CosignedCheckpoint(ctx, names, 2)
	if err != nil || cp.Size != third.Size {
		t.Fatalf("%v %v", cp, err)
	}
	if _, _, err := policy.Check(cp.Note, logV); err == nil || errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("misplaced cosignatures: %v; want a signature error", err)
	}
}

func TestWitnessConfig(t *testing.T) {
	w := newWitness(t, "w1.test")
	for _, tc := range []struct {
		w   witness.Witness
		bad string
	}{
		{witness.Witness{Name: "w1.test", URL: "https://w.example/", Key: w.vkey}, ""},
		{witness.Witness{Name: "w1.test", URL: "http://127.0.0.1:1", Key: w.vkey}, ""},
		{witness.Witness{Name: "w2.test", URL: "https://w.example", Key: w.vkey}, "name and key must agree"},
		{witness.Witness{Name: "w1.test", URL: "ftp://w.example", Key: w.vkey}, "url"},
		{witness.Witness{Name: "w1.test", URL: "https://user:pw@w.example", Key: w.vkey}, "url"},
		{witness.Witness{Name: "w1.test", URL: "https://w.example", Key: "w1.test+01234567+" + "BQ=="}, "key"},
		// An ML-DSA or ECDSA key (another algorithm byte): refused, not skipped.
		{witness.Witness{Name: "w1.test", URL: "https://w.example", Key: strings.Replace(w.vkey, "+A", "+B", 1)}, "key"},
		{witness.Witness{URL: "https://w.example", Key: w.vkey}, "name"},
	} {
		_, err := tc.w.Verifier()
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%+v: %v; want %q", tc.w, err, tc.bad)
		}
	}
	if _, err := witness.NewPolicy([]note.Verifier{w.verifier(t), w.verifier(t)}, 1); err == nil {
		t.Error("a witness named twice is accepted")
	}
	if _, err := witness.NewPolicy([]note.Verifier{w.verifier(t)}, 2); err == nil {
		t.Error("a quorum beyond the witnesses is accepted")
	}
}

func TestAddCheckpointBody(t *testing.T) {
	cp := []byte("o\n5\nAAAA\n\n— o abc\n")
	b, err := witness.AddCheckpointBody(3, tlog.TreeProof{{1}, {2}}, cp)
	if err != nil {
		t.Fatal(err)
	}
	want := "old 3\nAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n" + string(cp)
	if string(b) != want {
		t.Fatalf("body:\n%s\nwant:\n%s", b, want)
	}
	if _, err := witness.AddCheckpointBody(0, make(tlog.TreeProof, 64), cp); err == nil {
		t.Fatal("64 proof lines accepted")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0\n": 0, "17\n": 17, "17": -1, "017\n": -1, "\n": -1, "-1\n": -1, "1 \n": -1, "99999999999999999999\n": -1} {
		n, err := witness.ParseSize([]byte(in))
		if want < 0 && err == nil || want >= 0 && (err != nil || n != uint64(want)) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
}

func TestParseCosignature(t *testing.T) {
	lg, _ := openLog(t)
	cp := grow(t, lg, 1)
	w, other := newWitness(t, "w1.test"), newWitness(t, "w2.test")
	v := w.verifier(t)
	line := w.line(t, cp.Note)
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{line + "\n", true},
		{other.line(t, cp.Note) + "\n" + line + "\n", true}, // lines of unknown keys are ignored
		{other.line(t, cp.Note) + "\n", false},
		{line, false}, // no newline
		{"", false},
		{strings.Replace(line, w.name, "x", 1) + "\n", false},
	} {
		got, err := witness.ParseCosignature([]byte(tc.body), cp.Note, v)
		if tc.ok && (err != nil || got != line) || !tc.ok && err == nil {
			t.Errorf("%q: %q, %v", tc.body, got, err)
		}
	}
}

// FuzzParseSize: a witness's 409 answer never panics the cosigner and
// parses only as a canonical decimal.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0\n", "42\n", "042\n", "", "\n", "18446744073709551616\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := witness.ParseSize(b)
		if err == nil && string(b) != strings.TrimSpace(string(b))+"\n" {
			t.Fatalf("%q parsed as %d", b, n)
		}
	})
}

// FuzzParseCosignature: a witness's 200 answer is accepted only with a
// valid cosignature of the checkpoint by the witness's key.
func FuzzParseCosignature(f *testing.F) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "w1.test")
	s, _ := fnote.NewSignerForCosignatureV1(skey)
	v, _ := witness.ParseKey(vkey)
	lskey, _, _ := note.GenerateKey(rand.Reader, origin)
	ls, _ := note.NewSigner(lskey)
	cp, _ := note.Sign(&note.Note{Text: origin + "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, ls)
	signed, _ := note.Sign(&note.Note{Text: origin + "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, s)
	_, good, _ := bytes.Cut(signed, []byte("\n\n"))
	f.Add(good)
	f.Add([]byte("— w1.test AAAA\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		line, err := witness.ParseCosignature(b, cp, v)
		if err != nil {
			return
		}
		// What is accepted verifies as the witness's cosignature.
		n, err := note.Open(append(bytes.Clone(cp), []byte(line+"\n")...), note.VerifierList(v))
		if err != nil || len(n.Sigs) != 1 {
			t.Fatalf("accepted %q: %v", line, err)
		}
	})
}

// FuzzPolicyCheck: a checkpoint a server hands a client, with whatever
// signature lines, is accepted only with the log's signature and the
// quorum's valid cosignatures.
func FuzzPolicyCheck(f *testing.F) {
	w := newWitness(f, "w1.test")
	lskey, lvkey, _ := note.GenerateKey(rand.Reader, origin)
	ls, _ := note.NewSigner(lskey)
	logV, _ := note.NewVerifier(lvkey)
	cp, _ := note.Sign(&note.Note{Text: origin + "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, ls)
	policy, _ := witness.NewPolicy([]note.Verifier{w.verifier(f)}, 1)
	f.Add(append(bytes.Clone(cp), w.line(f, cp)+"\n"...))
	f.Add(cp)
	f.Add([]byte("x\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, cosigs, err := policy.Check(b, logV)
		if err == nil && (c == nil || len(cosigs) < 1) {
			t.Fatalf("accepted with %d cosignatures", len(cosigs))
		}
	})
}

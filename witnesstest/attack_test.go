package witnesstest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/witness"
)

// status returns the cosigner's view of the named witness.
func status(n *node.Node, name string) witness.Status {
	for _, s := range n.Cosigner.Status(context.Background()) {
		if s.Name == name {
			return s
		}
	}
	return witness.Status{}
}

// cosignedSize returns the largest size the node stored a cosignature of
// the named witness for.
func cosignedSize(t testing.TB, n *node.Node, name string) uint64 {
	t.Helper()
	sizes, err := n.Log.CosignedSizes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sizes[name].Size
}

// A fork: a second history signed with the same log.key, grown from a copy
// of the data directory. The witness, which cosigned the first history,
// refuses the second; a client holding the witness policy trusts no
// checkpoint of it, and one holding a witnessed checkpoint of the first
// history finds the second inconsistent with it.
func TestForkRefusedAndDetected(t *testing.T) {
	sqliteOnly(t)
	cfg, vkey := initDir(t)
	logV := logVerifier(t, vkey)
	w := startWitness(t, "witness.test/w1", vkey)
	policy := policyOf(t, 1, w)
	forkCfg := cfg
	forkCfg.DataDir = copyDir(t, cfg.DataDir) // same log.key, same history so far

	a := open(t, cfg, 1, w)
	defer a.Close()
	honest := witnessedAt(t, a, logV, policy, appendSigned(t, a, 4, "test.honest").Size)

	b := open(t, forkCfg, 1, w)
	defer b.Close()
	forked := appendSigned(t, b, 7, "test.forked")
	if forked.Size <= honest.Size {
		t.Fatalf("the fork (size %d) should be longer than the witnessed history (%d)", forked.Size, honest.Size)
	}
	eventually(t, "the witness's refusal", func() bool {
		return strings.Contains(status(b, w.name).Error, "422")
	})
	if got := cosignedSize(t, b, w.name); got != 0 {
		t.Fatalf("the fork got a cosignature of size %d", got)
	}
	// The fork's log signature is good; its checkpoint is not witnessed.
	_, _, err := policy.Check(served(t, b), logV)
	if !errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("fork's checkpoint under the policy: %v; want not enough cosignatures", err)
	}
	if _, err := audit.ParseCheckpoint(served(t, b), logV); err != nil {
		t.Fatalf("the fork is signed with log.key: %v", err)
	}
	// Pasting the honest history's cosignature under the fork's checkpoint
	// does not make it witnessed: the line does not verify.
	pasted := append(append([]byte(nil), forked.Note...), cosignatureLine(t, honest.Note, w.name)...)
	if _, _, err := policy.Check(pasted, logV); err == nil || errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("fork with a pasted cosignature: %v; want a signature error", err)
	}
	// A client holding the witnessed checkpoint detects the fork.
	f := &audit.Follower{Verifier: logV, Trusted: honest}
	if _, err := f.Advance(forked.Note, consistency(b)); !errors.Is(err, audit.ErrFork) {
		t.Fatalf("client holding the witnessed checkpoint, shown the fork: %v; want ErrFork", err)
	}
	// The honest history goes on being cosigned.
	witnessedAt(t, a, logV, policy, appendSigned(t, a, 2, "test.honest").Size)
}

// A rollback: the data directory is restored from an older backup and the
// log signs again. The witness has cosigned a larger tree and refuses the
// smaller one; grown past the size it cosigned, the restored log is a
// different history, which it refuses too.
func TestRollbackRefused(t *testing.T) {
	sqliteOnly(t)
	cfg, vkey := initDir(t)
	logV := logVerifier(t, vkey)
	w := startWitness(t, "witness.test/w1", vkey)
	policy := policyOf(t, 1, w)

	n := open(t, cfg, 1, w)
	witnessedAt(t, n, logV, policy, appendSigned(t, n, 3, "test.before-backup").Size)
	n.Close()
	backup := copyDir(t, cfg.DataDir)
	n = open(t, cfg, 1, w)
	latest := witnessedAt(t, n, logV, policy, appendSigned(t, n, 6, "test.after-backup").Size)
	n.Close()

	// Restore the backup over the data directory.
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backup, cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	n = open(t, cfg, 1, w)
	defer n.Close()
	restored := appendSigned(t, n, 1, "test.restored")
	if restored.Size >= latest.Size {
		t.Fatalf("restored log at size %d, want below the witnessed %d", restored.Size, latest.Size)
	}
	eventually(t, "the cosigner to learn the witness is ahead", func() bool {
		return strings.Contains(status(n, w.name).Error, "beyond this log's newest checkpoint")
	})
	if got := cosignedSize(t, n, w.name); got >= restored.Size {
		t.Fatalf("the restored log got a cosignature of size %d", got)
	}
	// What the node serves is the backup's old witnessed checkpoint: a
	// client that saw the later one finds it a rollback.
	old, _, err := policy.Check(served(t, n), logV)
	if err != nil {
		t.Fatal(err)
	}
	f := &audit.Follower{Verifier: logV, Trusted: latest}
	if _, err := f.Advance(old.Note, consistency(n)); !errors.Is(err, audit.ErrRollback) {
		t.Fatalf("client shown the restored log: %v; want ErrRollback", err)
	}
	// Grown past the size the witness cosigned, the restored log is
	// another history: refused as inconsistent.
	grown := appendSigned(t, n, int(latest.Size-restored.Size)+2, "test.restored")
	eventually(t, "the witness's refusal of the grown restored log", func() bool {
		return strings.Contains(status(n, w.name).Error, "422")
	})
	if _, _, err := policy.Check(grown.Note, logV); !errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("grown restored log: %v; want not enough cosignatures", err)
	}
	if _, err := f.Advance(grown.Note, consistency(n)); !errors.Is(err, audit.ErrFork) {
		t.Fatalf("client shown the grown restored log: %v; want ErrFork", err)
	}
}

// A re-signed rewrite: an old entry changed, the tree recomputed and
// re-signed with log.key at the same size. Here the rewritten history is
// replayed from the same starting directory with one entry changed; the
// witness, holding the original root for that size, refuses it, and a
// client holding the witnessed checkpoint sees two roots for one size.
func TestResignedRewriteCaught(t *testing.T) {
	sqliteOnly(t)
	cfg, vkey := initDir(t)
	logV := logVerifier(t, vkey)
	w := startWitness(t, "witness.test/w1", vkey)
	policy := policyOf(t, 1, w)
	rewriteCfg := cfg
	rewriteCfg.DataDir = copyDir(t, cfg.DataDir)

	n := open(t, cfg, 1, w)
	defer n.Close()
	appendSigned(t, n, 2, "contact.read")
	appendSigned(t, n, 1, "contact.export") // the entry to hide
	original := witnessedAt(t, n, logV, policy, appendSigned(t, n, 2, "contact.read").Size)

	r := open(t, rewriteCfg, 1, w)
	defer r.Close()
	appendSigned(t, r, 2, "contact.read")
	appendSigned(t, r, 1, "contact.read") // the export, rewritten as a read
	rewritten := appendSigned(t, r, 2, "contact.read")
	if rewritten.Size != original.Size || rewritten.Root == original.Root {
		t.Fatalf("rewrite: size %d root %s; original size %d root %s", rewritten.Size, rewritten.Root, original.Size, original.Root)
	}
	eventually(t, "the witness's refusal of the rewrite", func() bool {
		return strings.Contains(status(r, w.name).Error, "422")
	})
	if _, _, err := policy.Check(served(t, r), logV); !errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("rewritten log's checkpoint: %v; want not enough cosignatures", err)
	}
	f := &audit.Follower{Verifier: logV, Trusted: original}
	if _, err := f.Advance(rewritten.Note, consistency(r)); !errors.Is(err, audit.ErrFork) {
		t.Fatalf("client holding the witnessed checkpoint, shown the rewrite: %v; want ErrFork", err)
	}
}

// A witness that stops answering does not slow appends (it is never
// waited on), and when it answers again it is caught up with one request
// carrying one consistency proof from the size it had to the newest
// checkpoint, not one per checkpoint it missed.
func TestOutageDoesNotBlockAppendsAndCatchUpUsesOneProof(t *testing.T) {
	cfg, vkey := initDir(t)
	logV := logVerifier(t, vkey)
	down, up := startWitness(t, "witness.test/down", vkey), startWitness(t, "witness.test/up", vkey)
	// The cosigner waits up to a minute for an answer: longer than the
	// whole outage below.
	n := openTimeout(t, cfg, 1, time.Minute, down, up)
	defer n.Close()
	before := witnessedAt(t, n, logV, policyOf(t, 2, down, up), appendSigned(t, n, 3, "test.before").Size)

	down.setHold(true) // it accepts connections and never answers
	first := appendSigned(t, n, 3, "test.during")
	eventually(t, "a request stalled at the down witness", func() bool { return down.inHold() == 1 })
	var last *audit.Checkpoint
	for range 20 { // twenty more checkpoints while that request hangs
		last = appendSigned(t, n, 3, "test.during")
	}
	// Every append returned while the request for the first checkpoint
	// was still waiting: nothing in the append path waits for a witness.
	if got := down.inHold(); got != 1 || last.Size <= first.Size {
		t.Fatalf("%d requests stalled after the appends (want the first, still waiting); sizes %d → %d", got, first.Size, last.Size)
	}
	// The other witness kept up; the quorum of one is served.
	witnessedAt(t, n, logV, policyOf(t, 1, down, up), last.Size)
	if s := status(n, down.name); s.Size != before.Size || s.Behind != last.Size-before.Size {
		t.Fatalf("down witness's status %+v; want size %d, %d behind", s, before.Size, last.Size-before.Size)
	}
	if m, want := get(t, diagnostics(t, n)+"/metrics"), fmt.Sprintf(`custos_witness_behind_entries{witness="witness.test/down"} %d`, last.Size-before.Size); !strings.Contains(m, want) {
		t.Fatalf("/metrics does not show %s:\n%s", want, m)
	}
	seen := len(down.log()) // requests stalled in the outage are not in it

	down.setHold(false)
	witnessedAt(t, n, logV, policyOf(t, 2, down, up), last.Size)
	var ok []request
	for _, r := range down.log()[seen:] {
		if r.status == http.StatusOK {
			ok = append(ok, r)
		}
	}
	if len(ok) != 1 {
		t.Fatalf("catch-up took %d cosigned requests %+v; want one", len(ok), ok)
	}
	proof, err := n.Log.ConsistencyProof(context.Background(), before.Size, last.Size)
	if err != nil {
		t.Fatal(err)
	}
	if r := ok[0]; r.old != before.Size || r.size != last.Size || r.proofLines != len(proof) {
		t.Fatalf("catch-up request old %d size %d with %d proof lines; want old %d size %d with %d", r.old, r.size, r.proofLines, before.Size, last.Size, len(proof))
	}
}

// cosignatureLine returns the named witness's signature line of a note.
func cosignatureLine(t testing.TB, msg []byte, name string) string {
	t.Helper()
	for _, l := range strings.SplitAfter(string(msg), "\n") {
		if strings.HasPrefix(l, "— "+name+" ") {
			return l
		}
	}
	t.Fatalf("no cosignature of %s", name)
	return ""
}

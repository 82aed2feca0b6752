package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// indexLeaves appends a mix of principals, keys, sources and tenants,
// and returns how many entries each principal got.
func indexLeaves(t *testing.T, lg *audit.Log) map[string]int {
	t.Helper()
	counts := map[string]int{}
	var es []audit.Entry
	for i := 0; i < 60; i++ {
		actor := []string{"pr_alice", "pr_bob", "system", "anonymous"}[i%4]
		if audit.IsPrincipal(actor) {
			counts[actor]++
		}
		es = append(es, audit.Entry{Leaf: audit.Leaf{
			Actor: actor, Action: "contact.read", Outcome: "ok",
			KeyID:  map[bool]string{true: "ak_" + actor[3:], false: ""}[audit.IsPrincipal(actor)],
			Source: []string{"10.1.2.3", "10.9.0.1", "2001:db8::7", ""}[i%3],
			Tenant: []string{"tn_one", "tn_two", ""}[i%3],
		}})
	}
	// Concurrent appends: the sequence must not depend on batching.
	var wg sync.WaitGroup
	for _, chunk := range [][]audit.Entry{es[:20], es[20:40], es[40:]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range chunk {
				if _, err := lg.Append(context.Background(), e); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	return counts
}

// checkActorSeqs reads every entry and checks each principal's actor_seq
// runs 1..N in index order and only principals have one.
func checkActorSeqs(t *testing.T, lg *audit.Log, counts map[string]int) {
	t.Helper()
	ss, err := lg.Entries(context.Background(), 0, int(lg.Size()))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint64{}
	for _, s := range ss {
		var l audit.Leaf
		if err := jsonUnmarshal(s.Data, &l); err != nil {
			t.Fatal(err)
		}
		if !audit.IsPrincipal(l.Actor) {
			if l.ActorSeq != 0 {
				t.Errorf("entry %d: actor %s has actor_seq %d", s.Index, l.Actor, l.ActorSeq)
			}
			continue
		}
		if l.ActorSeq != seen[l.Actor]+1 {
			t.Errorf("entry %d: actor_seq %d, want %d", s.Index, l.ActorSeq, seen[l.Actor]+1)
		}
		seen[l.Actor] = l.ActorSeq
	}
	for a, n := range counts {
		if seen[a] != uint64(n) {
			t.Errorf("%s: last actor_seq %d, want %d", a, seen[a], n)
		}
	}
}

func TestActorSeqAndIndex(t *testing.T) {
	e := newLog(t)
	counts := indexLeaves(t, e.log)
	checkActorSeqs(t, e.log, counts)
	if _, err := audit.Verify(context.Background(), e.db.Read, e.verifier, audit.VerifyOptions{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	size := e.log.Size()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8)) // ranges beyond this machine's cores too
	for _, tc := range []struct {
		name string
		q    audit.Subject
		want func(l audit.Leaf) bool
	}{
		{"principal", audit.Subject{Principal: "pr_alice"}, func(l audit.Leaf) bool { return l.Actor == "pr_alice" }},
		{"key", audit.Subject{Key: "ak_bob"}, func(l audit.Leaf) bool { return l.KeyID == "ak_bob" }},
		{"tenant", audit.Subject{Tenant: "tn_two"}, func(l audit.Leaf) bool { return l.Tenant == "tn_two" }},
		{"source v4 /16", audit.Subject{Source: netip.MustParsePrefix("10.1.0.0/16")}, func(l audit.Leaf) bool { return l.Source == "10.1.2.3" }},
		{"source v4 /8", audit.Subject{Source: netip.MustParsePrefix("10.0.0.0/8")}, func(l audit.Leaf) bool { return l.Source == "10.1.2.3" || l.Source == "10.9.0.1" }},
		{"source v6", audit.Subject{Source: netip.MustParsePrefix("2001:db8::/32")}, func(l audit.Leaf) bool { return l.Source == "2001:db8::7" }},
	} {
		// Read in one range, and split into ranges read in parallel
		// (more ranges than entries of the subject, too), below the
		// whole log's size and below a smaller one.
		for _, split := range []struct {
			workers int
			split   uint64
		}{{4, 1 << 40}, {2, 0}, {3, 1}, {8, 0}} {
			for _, below := range []uint64{size, size - 7} {
				t.Run(fmt.Sprintf("%s/%d ranges/below %d", tc.name, split.workers, below), func(t *testing.T) {
					audit.SetSubjectSplit(t, split.workers, split.split)
					got, err := e.log.SubjectEntries(context.Background(), tc.q, below)
					if err != nil {
						t.Fatal(err)
					}
					all, err := e.log.Entries(context.Background(), 0, int(below))
					if err != nil {
						t.Fatal(err)
					}
					var want []uint64
					for _, s := range all {
						var l audit.Leaf
						jsonUnmarshal(s.Data, &l)
						if tc.want(l) {
							want = append(want, s.Index)
						}
					}
					var have []uint64
					for i, s := range got {
						have = append(have, s.Index)
						if !bytes.Equal(s.Data, all[s.Index].Data) || !bytes.Equal(s.Leaf, all[s.Index].Leaf) {
							t.Errorf("entry %d (%d-th): not the stored entry", s.Index, i)
						}
					}
					if len(want) == 0 || fmt.Sprint(have) != fmt.Sprint(want) {
						t.Errorf("entries %v, want %v", have, want)
					}
				})
			}
		}
	}
	// An altered entry of the subject in the last range is named, as one
	// reader would have named it.
	audit.SetSubjectSplit(t, 3, 0)
	alice, err := e.log.SubjectEntries(context.Background(), audit.Subject{Principal: "pr_alice"}, size)
	if err != nil {
		t.Fatal(err)
	}
	bad := alice[len(alice)-1].Index
	altered := bytes.Replace(alice[len(alice)-1].Data, []byte("contact.read"), []byte("contact.list"), 1)
	if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET data = $1 WHERE idx = $2`, altered, int64(bad)); err != nil {
		t.Fatal(err)
	}
	var verr *audit.VerifyError
	if _, err := e.log.SubjectEntries(context.Background(), audit.Subject{Principal: "pr_alice"}, size); !errors.As(err, &verr) || verr.Index != bad {
		t.Fatalf("SubjectEntries over an altered entry %d = %v, want a VerifyError naming it", bad, err)
	}
	if _, err := e.log.SubjectEntries(context.Background(), audit.Subject{Principal: "pr_alice", Key: "ak_alice"}, size); err == nil {
		t.Error("a subject with two fields was accepted")
	}
}

// TestIndexTamper changes one index column at a time; the verifier must
// name the entry.
func TestIndexTamper(t *testing.T) {
	for _, tc := range []struct{ name, set string }{
		{"actor_seq", `actor_seq = actor_seq + 1`},
		{"actor_seq removed", `actor_seq = NULL`},
		{"key", `key_id = 'ak_other'`},
		{"source", `source_key = '00000000000000000000ffff0a000001'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLog(t)
			indexLeaves(t, e.log)
			e.log.Close()
			// Entry 4 is pr_alice's with a key and a source (i%4 == 0, i%3 == 1).
			if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET ` + tc.set + ` WHERE idx = (SELECT MIN(idx) FROM audit_leaves WHERE actor = 'pr_alice' AND source_key IS NOT NULL AND idx > 2)`); err != nil {
				t.Fatal(err)
			}
			err := audit.VerifyIndex(context.Background(), e.db.Read)
			var ve *audit.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("VerifyIndex = %v, want a VerifyError", err)
			}
			if _, err := audit.Verify(context.Background(), e.db.Read, e.verifier, audit.VerifyOptions{}); !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a VerifyError", err)
			}
		})
	}
}

// TestActorSeqQueued: the leader of queued mode assigns actor_seq too.
func TestActorSeqQueued(t *testing.T) {
	logs, db, e := queuedNodes(t, 2)
	waitLeader(t, logs)
	counts := map[string]int{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for n, lg := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				actor := []string{"pr_alice", "pr_bob", "system"}[(i+n)%3]
				mu.Lock()
				if audit.IsPrincipal(actor) {
					counts[actor]++
				}
				mu.Unlock()
				if _, err := lg.Append(context.Background(), audit.Entry{Leaf: audit.Leaf{Actor: actor, Action: "contact.read", Outcome: "ok", Source: "10.0.0.1", KeyID: "ak_x"}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, lg := range logs {
		if err := lg.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	checkActorSeqs(t, logs[0], counts)
	if err := audit.VerifyIndex(context.Background(), db.Read); err != nil {
		t.Fatal(err)
	}
	_ = e
}

func TestSourceKey(t *testing.T) {
	if audit.SourceKey("10.0.0.1") != audit.SourceKey("::ffff:10.0.0.1") {
		t.Error("an IPv4 address and its mapped form have different keys")
	}
	if audit.SourceKey("not an address") != "" || audit.SourceKey("") != "" {
		t.Error("a non-address has a key")
	}
	if k := audit.SourceKey("2001:db8::1"); len(k) != 32 {
		t.Errorf("key %q is not 32 hex digits", k)
	}
}

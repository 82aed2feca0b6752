package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/store"
)

// TestScale builds a large log with the bulk path (AppendAll batches the
// sequencer commits 4096 at a time) and measures what issue 17 asks of a
// 10-million-entry log: full verification, incremental verification of
// the last 100 000 entries, one tenant's feed pulled with every proof
// checked as a client would, and disk use. It runs only when
// CUSTOS_BENCH_LOG holds the number of entries:
//
//	CUSTOS_BENCH_LOG=10000000 CUSTOS_BENCH_LOG_DIR=/tmp/scale go test -run TestScale -v -timeout 3h ./audit/
//
// CUSTOS_BENCH_LOG_DIR keeps the database (and its keys) between runs, so
// that a second run skips building it. Every tenth entry is tenant
// tn_big's (1 000 000 of 10 000 000); the others spread over 1 000
// tenants and 100 principals. CUSTOS_TEST_SQLITE_MMAP_MIB and
// CUSTOS_TEST_SQLITE_CACHE_MIB give the database the memory section's
// mmap_mib and cache_mib (storetest.MemoryFromEnv). SQLite only: it
// measures the embedded default.
func TestScale(t *testing.T) {
	total, _ := strconv.ParseUint(os.Getenv("CUSTOS_BENCH_LOG"), 10, 64)
	if total < 200_000 {
		t.Skip("set CUSTOS_BENCH_LOG to at least 200000 entries to run")
	}
	const tail = 100_000
	dir := os.Getenv("CUSTOS_BENCH_LOG_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	ctx := context.Background()
	signer, verifier := scaleKeys(t, dir)
	db, err := store.Open(ctx, filepath.Join(dir, "custos.db"), store.Options{Memory: storetest.MemoryFromEnv(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := audit.Config{Origin: origin, Signer: signer, Verifier: verifier, Placeholders: db.Placeholders, MaxBatch: 4096, VerifyInterval: -1}
	lg, err := audit.Open(ctx, db.Read, db.Write, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { lg.Close() }()

	grow := func(to uint64) {
		from := lg.Size()
		if from >= to {
			return
		}
		start := time.Now()
		const chunk = 50_000
		es := make([]audit.Entry, 0, chunk)
		for i := from; i < to; {
			es = es[:0]
			for ; i < to && len(es) < chunk; i++ {
				es = append(es, audit.Entry{Leaf: scaleLeaf(i)})
			}
			if _, err := lg.AppendAll(ctx, es); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := lg.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		t.Logf("appended %d entries (%d → %d) in %v: %.0f entries/s", to-from, from, to, d.Round(time.Millisecond), float64(to-from)/d.Seconds())
	}

	// The state a verifier kept at total-tail entries.
	statePath := filepath.Join(dir, fmt.Sprintf("state-%d.json", total-tail))
	var st audit.VerifyState
	if b, err := os.ReadFile(statePath); err == nil && lg.Size() >= total-tail {
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
	} else {
		grow(total - tail)
		start, cpu := time.Now(), cpuTime()
		rep, err := audit.Verify(ctx, db.Read, verifier, audit.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		t.Logf("full verify of %d entries: %v (%.0f entries/s), CPU %v", rep.Size, d.Round(time.Millisecond), float64(rep.Size)/d.Seconds(), (cpuTime() - cpu).Round(time.Millisecond))
		st = *rep.State
		b, _ := json.Marshal(st)
		if err := os.WriteFile(statePath, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	grow(total)

	start, cpu := time.Now(), cpuTime()
	rep, err := audit.VerifyFrom(ctx, db.Read, verifier, &st, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("incremental verify of %d new entries on a %d-entry log: %v, CPU %v", rep.Size-rep.From, rep.Size, time.Since(start).Round(time.Millisecond), (cpuTime() - cpu).Round(time.Millisecond))
	start, cpu = time.Now(), cpuTime()
	if rep, err = audit.VerifyFrom(ctx, db.Read, verifier, &st, audit.VerifyOptions{Scrub: 4096}); err != nil {
		t.Fatal(err)
	}
	t.Logf("incremental verify of %d new entries with a 4096-entry scrub: %v, CPU %v", rep.Size-rep.From, time.Since(start).Round(time.Millisecond), (cpuTime() - cpu).Round(time.Millisecond))

	// One tenant's feed, every proof checked as `custos audit pull` does,
	// after a JSON round trip as over the wire: with shared per-entry
	// proofs (the pull before page proofs) and with one proof per page,
	// the page written as the server writes it (Feed.AppendJSON).
	// A page-proved page is decoded as custos audit pull decodes it
	// (client.DecodeAccessFeed), and, for a same-run comparison, with
	// encoding/json as the pull did before. CUSTOS_BENCH_FEED=page
	// measures only the first (for a profile); =pages the two page modes.
	type feedMode struct{ page, stdJSON bool }
	modes := []feedMode{{false, true}, {true, true}, {true, false}}
	switch os.Getenv("CUSTOS_BENCH_FEED") {
	case "page":
		modes = []feedMode{{true, false}}
	case "pages":
		modes = []feedMode{{true, true}, {true, false}, {true, true}, {true, false}}
	}
	for _, m := range modes {
		page := m.page
		start, cpu = time.Now(), cpuTime()
		var after uint64
		var pulled int
		var wire int64
		for {
			feed := lg.TenantFeed
			if page {
				feed = lg.TenantFeedPage
			}
			f, err := feed(ctx, "tn_big", after, audit.MaxFeedPage)
			if err != nil {
				t.Fatal(err)
			}
			var b []byte
			if page {
				b = f.AppendJSON(nil)
			} else {
				audit.ShareProofs(f.Entries) // as custos audit pull asked
				if b, err = json.Marshal(f); err != nil {
					t.Fatal(err)
				}
			}
			wire += int64(len(b))
			var got audit.Feed
			if page && !m.stdJSON {
				// As custos audit pull decodes a page (client.DecodeAccessFeed).
				af, err := client.DecodeAccessFeed(b)
				if err != nil {
					t.Fatal(err)
				}
				got = audit.Feed{Checkpoint: af.Checkpoint, More: af.More, PageProof: af.PageProof, Entries: make([]audit.FeedEntry, len(af.Entries))}
				for i, e := range af.Entries {
					got.Entries[i] = audit.FeedEntry{TenantSeq: e.TenantSeq, Index: e.Index, Body: e.Body, Salt: e.Salt}
				}
			} else if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			cp, err := audit.ParseCheckpoint(got.Checkpoint, verifier)
			if err != nil {
				t.Fatal(err)
			}
			if page {
				if err := audit.CheckFeedPage(cp, got.Entries, got.PageProof, "tn_big", after+1); err != nil {
					t.Fatal(err)
				}
				if n := len(got.Entries); n > 0 {
					after = got.Entries[n-1].TenantSeq
					pulled += n
				}
			} else {
				var prev []tlog.Hash
				for _, fe := range got.Entries {
					if fe.Proof, err = audit.ExpandProof(prev, fe.Proof, fe.Shared); err != nil {
						t.Fatal(err)
					}
					prev = fe.Proof
					if err := audit.CheckFeedEntry(cp, fe, "tn_big", after+1); err != nil {
						t.Fatal(err)
					}
					after = fe.TenantSeq
					pulled++
				}
			}
			if !got.More {
				break
			}
		}
		d := time.Since(start)
		mode := "shared proofs"
		if page && m.stdJSON {
			mode = "page proofs, encoding/json"
		} else if page {
			mode = "page proofs, DecodeAccessFeed"
		}
		t.Logf("tenant feed of tn_big, %s: %d entries with proofs verified in %v (%.0f entries/s, %d bytes of JSON, %.0f B per entry), CPU %v", mode, pulled, d.Round(time.Millisecond), float64(pulled)/d.Seconds(), wire, float64(wire)/float64(pulled), (cpuTime() - cpu).Round(time.Millisecond))
	}

	if os.Getenv("CUSTOS_BENCH_FULL") != "" {
		start, cpu = time.Now(), cpuTime()
		rep, err := audit.Verify(ctx, db.Read, verifier, audit.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		t.Logf("full verify of %d entries: %v (%.0f entries/s), CPU %v", rep.Size, d.Round(time.Millisecond), float64(rep.Size)/d.Seconds(), (cpuTime() - cpu).Round(time.Millisecond))
	}
	lg.Close()
	var size int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(filepath.Join(dir, "custos.db") + suffix); err == nil {
			size += fi.Size()
		}
	}
	t.Logf("disk: %d bytes for %d entries (%.0f B per entry)", size, lg.Size(), float64(size)/float64(lg.Size()))
}

// cpuTime returns the process's user and system CPU time so far: on a
// machine others share, it says what the wall time would be on an idle one.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scaleLeaf is entry i of the scale log: a contact read of the size of a
// real one (~300 bytes of JSON).
func scaleLeaf(i uint64) audit.Leaf {
	tenant := fmt.Sprintf("tn_%026d", i%1000)
	if i%10 == 0 {
		tenant = "tn_big"
	}
	return audit.Leaf{Actor: fmt.Sprintf("pr_%026d", i%100), ActorKind: "tenant_admin", KeyID: fmt.Sprintf("ak_%026d", i%100),
		Source: "10.0.0.1", Action: "contact.read", Tenant: tenant, List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Tokens: []string{fmt.Sprintf("ct_%026d", i)}, Outcome: "ok", RequestID: fmt.Sprintf("rq_%026d", i)}
}

// scaleKeys returns the scale log's keys, kept in dir.
func scaleKeys(t *testing.T, dir string) (note.Signer, note.Verifier) {
	t.Helper()
	path := filepath.Join(dir, "log.key")
	b, err := os.ReadFile(path)
	if err != nil {
		skey, vkey, err := audit.GenerateKey(origin)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(skey + "\n" + vkey)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var skey, vkey string
	fmt.Sscanf(string(b), "%s\n%s", &skey, &vkey)
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/server"
)

// Tests of issue 13, finding 5: a server that stops the damage, and
// `log verify` / `audit pull` that remember what they verified.

// stoppable is a served data directory whose server a test stops and
// starts again (the URL changes; c follows it).
type stoppable struct {
	t   *testing.T
	c   *cli
	dir string
	srv *node.Node
}

func servedStoppable(t *testing.T) *stoppable {
	t.Helper()
	c := initialised(t)
	s := &stoppable{t: t, c: c, dir: c.dir}
	s.start()
	c.env["CUSTOS_KEY"] = c.op
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *stoppable) start() {
	s.t.Helper()
	s.srv = startServer(s.t, s.dir)
	s.c.env["CUSTOS_SERVER"] = s.srv.URL
}

func (s *stoppable) stop() {
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func (s *stoppable) db() *sql.DB {
	s.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.dir, "custos.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	return db
}

// rebuildAndResign does what an insider holding the database and log.key
// does after changing leaves: recompute every tile from the stored
// leaves, re-sign every checkpoint up to the log's size over the new
// tree (dropping those beyond it) and sign one at its size. Afterwards
// the database is consistent: plain `log verify` passes.
func rebuildAndResign(t *testing.T, dir string, db *sql.DB) {
	t.Helper()
	skey, err := os.ReadFile(filepath.Join(dir, "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	leaves := storetest.Column[[]byte](t, db, `SELECT COALESCE(leaf, data) FROM audit_leaves ORDER BY idx`)
	hashes := map[int64]tlog.Hash{}
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			h, ok := hashes[x]
			if !ok {
				return nil, fmt.Errorf("no hash %d", x)
			}
			out[i] = h
		}
		return out, nil
	})
	for n, leaf := range leaves {
		hs, err := tlog.StoredHashes(int64(n), leaf, r)
		if err != nil {
			t.Fatal(err)
		}
		for j, h := range hs {
			hashes[tlog.StoredHashIndex(0, int64(n))+int64(j)] = h
		}
	}
	size := int64(len(leaves))
	mustExec(t, db, `DELETE FROM audit_tiles`)
	for _, tile := range tlog.NewTiles(8, 0, size) {
		if tile.L == 0 && tile.W < 256 {
			continue // derived from the leaves, not stored (audit/tiles.go)
		}
		data, err := tlog.ReadTileData(tile, r)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, `INSERT INTO audit_tiles (level, idx, width, data) VALUES ($1, $2, $3, $4)`, tile.L, tile.N, tile.W, data)
	}
	mustExec(t, db, `DELETE FROM audit_checkpoints WHERE size > $1`, size)
	mustExec(t, db, `INSERT INTO audit_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING`, size, []byte{}, []byte{}, time.Now().UnixMilli())
	for _, s := range storetest.Column[int64](t, db, `SELECT size FROM audit_checkpoints`) {
		root, err := tlog.TreeHash(s, r)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", signer.Name(), s, base64.StdEncoding.EncodeToString(root[:]))}, signer)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, `UPDATE audit_checkpoints SET root = $1, note = $2 WHERE size = $3`, root[:], msg, s)
	}
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// rewriteEntry changes what entry idx says and commits to the new body
// under its own salt, as an insider with the database and the code could.
func rewriteEntry(t *testing.T, db *sql.DB, idx int) {
	t.Helper()
	var data, salt []byte
	if err := db.QueryRow(`SELECT data, salt FROM audit_leaves WHERE idx = $1`, idx).Scan(&data, &salt); err != nil {
		t.Fatal(err)
	}
	var l map[string]any
	json.Unmarshal(data, &l)
	l["outcome"] = "denied"
	forged, _ := json.Marshal(l)
	mustExec(t, db, `UPDATE audit_leaves SET data = $1, leaf = $2 WHERE idx = $3`, forged, audit.Commit(salt, forged), idx)
}

// truncate removes every entry from n on, consistently: tiles rebuilt,
// checkpoints beyond dropped and the rest re-signed.
func truncate(t *testing.T, dir string, db *sql.DB, n int) {
	t.Helper()
	mustExec(t, db, `DELETE FROM audit_leaves WHERE idx >= $1`, n)
	rebuildAndResign(t, dir, db)
}

func logSize(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM audit_leaves`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// backup copies the database (the server stopped) and returns a function
// that restores it, as an operator restoring an old backup would.
func (s *stoppable) backup() (restore func()) {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "custos.db"))
	if err != nil {
		s.t.Fatal(err)
	}
	return func() {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(filepath.Join(s.dir, "custos.db") + suffix)
		}
		if err := os.WriteFile(filepath.Join(s.dir, "custos.db"), b, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
}

// forgetServerState removes what the server itself remembers of the log
// (an insider with the host can), so that only the client's state is left
// to catch the change.
func (s *stoppable) forgetServerState() {
	os.Remove(filepath.Join(s.dir, node.VerifiedFile))
}

// verifiedState stops the server and runs `log verify --state` into a new
// state file; it returns the file and the command's output.
func (s *stoppable) verifiedState() (state, out string) {
	s.t.Helper()
	s.stop()
	state = filepath.Join(s.t.TempDir(), "verified.cp")
	return state, s.c.must("log", "verify", "--state", state)
}

// refusesState checks that `log verify --state state` fails saying want;
// after says what was done to the log, for the failure message.
func (s *stoppable) refusesState(state, want, after string) {
	s.t.Helper()
	_, err := s.c.run("log", "verify", "--state", state)
	if err == nil || !strings.Contains(err.Error(), want) {
		s.t.Fatalf("log verify --state after %s: %v; want %q", after, err, want)
	}
}

func TestVerifyStateCatchesTruncation(t *testing.T) {
	s := servedStoppable(t)
	for range 4 {
		s.c.tenant("T")
	}
	state, _ := s.verifiedState()
	db := s.db()
	truncate(t, s.dir, db, logSize(t, db)/2)
	// What the database shows is consistent: plain verify has nothing to
	// hold it against.
	s.c.must("log", "verify")
	s.refusesState(state, "truncated or rolled back", "a consistent truncation")
}

func TestVerifyStateCatchesOldBackup(t *testing.T) {
	s := servedStoppable(t)
	s.c.tenant("Before")
	s.stop()
	restore := s.backup()
	s.start()
	for range 3 {
		s.c.tenant("After")
	}
	state, _ := s.verifiedState()
	restore()
	s.c.must("log", "verify") // the backup is a consistent log of its own
	s.refusesState(state, "truncated or rolled back", "an older backup was restored")
	// The backup grown again past what was verified is not the same log.
	s.forgetServerState()
	s.start()
	for range 6 {
		s.c.tenant("Regrown")
	}
	s.stop()
	s.refusesState(state, "history was rewritten", "an older backup was restored and grew")
}

func TestVerifyStateCatchesResignedRewrite(t *testing.T) {
	s := servedStoppable(t)
	for range 3 {
		s.c.tenant("T")
	}
	state, out := s.verifiedState()
	if !strings.Contains(out, "kept the checkpoint") {
		t.Fatalf("log verify --state kept nothing:\n%s", out)
	}
	out = s.c.must("log", "verify", "--state", state) // unchanged log: passes, and says against what
	if !strings.Contains(out, "verified before") {
		t.Fatalf("second log verify --state:\n%s", out)
	}
	db := s.db()
	rewriteEntry(t, db, 2)
	rebuildAndResign(t, s.dir, db)
	s.c.must("log", "verify") // re-signed with log.key: consistent in itself
	s.refusesState(state, "history was rewritten", "a rewrite re-signed with log.key")
}

// TestPullStateCatchesRewrite: a tenant that pulled its feed (and kept
// its state) is refused whatever the server later shows: the same size
// with another history, a rewrite that grew past what it saw, an older
// backup, or an older backup that grew again. The server's own memory of
// the log is wiped each time, so only the tenant's state can tell.
func TestPullStateCatchesRewrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(s *stoppable, db *sql.DB, restore func())
		grow   bool // the log grows past what the tenant saw after the change
		want   string
	}{
		{"rewrite re-signed, same size", func(s *stoppable, db *sql.DB, _ func()) {
			rewriteEntry(t, db, 1)
			rebuildAndResign(t, s.dir, db)
		}, false, "fork"},
		{"rewrite re-signed, then grown", func(s *stoppable, db *sql.DB, _ func()) {
			rewriteEntry(t, db, 1)
			rebuildAndResign(t, s.dir, db)
		}, true, "fork"},
		{"truncated and re-signed", func(s *stoppable, db *sql.DB, _ func()) {
			truncate(t, s.dir, db, logSize(t, db)-3)
		}, false, "rollback|fork"}, // fork: the server's start appended back to the same size
		{"truncated, re-signed, then grown", func(s *stoppable, db *sql.DB, _ func()) {
			truncate(t, s.dir, db, logSize(t, db)-3)
		}, true, "fork"},
		{"older backup restored", func(s *stoppable, _ *sql.DB, restore func()) { restore() }, false, "rollback|fork"},
		{"older backup restored, then grown", func(s *stoppable, _ *sql.DB, restore func()) { restore() }, true, "fork"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := servedStoppable(t)
			s.c.t = t
			tenant, admin := s.c.tenant("Acme")
			s.stop()
			restore := s.backup()
			s.start()
			list := idRE("ls").FindString(s.c.mustAs(admin, "list", "create", "--tenant", tenant, "news"))
			for i := range 3 {
				s.c.mustAs(admin, "contact", "add", "--tenant", tenant, "--list", list, fmt.Sprintf("p%d@example.test", i))
			}
			state := filepath.Join(t.TempDir(), "state.json")
			args := []string{"--tenant", tenant, "--log-key", filepath.Join(s.dir, "log.pub"), "--state", state}
			s.c.env["CUSTOS_KEY"] = admin
			if out, err := pullUntil(s.c, args, 5); err != nil {
				t.Fatalf("honest pull: %v\n%s", err, out)
			}
			s.c.env["CUSTOS_KEY"] = s.c.op
			s.stop()
			tc.change(s, s.db(), restore)
			s.forgetServerState()
			s.start()
			if tc.grow {
				b, _ := os.ReadFile(state)
				var st pullState
				json.Unmarshal(b, &st)
				v, _ := loadVerifier(filepath.Join(s.dir, "log.pub"))
				seen, err := audit.ParseCheckpoint([]byte(st.Checkpoint), v)
				if err != nil {
					t.Fatal(err)
				}
				for i, deadline := 0, time.Now().Add(15*time.Second); ; i++ {
					// Tenants without enrolling their admins: enough entries.
					s.c.must("tenant", "create", "--admin-email", fmt.Sprintf("later%d@corp.test", i), "Later")
					resp, err := http.Get(s.srv.URL + "/log/checkpoint")
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if cp, err := audit.ParseCheckpoint(b, v); err == nil && cp.Size > seen.Size {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the log never grew past what the tenant saw")
					}
				}
			}
			s.c.env["CUSTOS_KEY"] = admin
			_, err := s.c.run(append([]string{"audit", "pull"}, args...)...)
			if err == nil || !strings.Contains(err.Error(), "REFUSED") || !containsAnyOf(err.Error(), strings.Split(tc.want, "|")) {
				t.Fatalf("pull after %s: %v; want REFUSED (%s)", tc.name, err, tc.want)
			}
		})
	}
}

// TestServerStopsOnTamper: the running server checks its stored log
// against its signed checkpoints continuously; on a mismatch it refuses
// every audited request with 503 log_tampered, /readyz is not ready and /healthz (alive still) says why, and
// the detector raises the critical log-integrity alert. It also checks at
// start, including against what it verified before it stopped.
func TestServerStopsOnTamper(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stopped bool // tamper while the server is down
		tamper  func(s *stoppable, db *sql.DB)
		reason  string
	}{
		{"changed entry", false, func(s *stoppable, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_leaves SET data = replace(data, 'tenant.create', 'tenant.read') WHERE idx = 2`)
		}, "commitment"},
		{"changed commitment", false, func(s *stoppable, db *sql.DB) {
			// level 0's partial tile is derived from the rows: the signed
			// checkpoint over them refuses the changed one
			rewriteEntry(t, db, 3)
		}, "do not match the signed checkpoint"},
		{"removed entry", false, func(s *stoppable, db *sql.DB) {
			mustExec(t, db, `DELETE FROM audit_leaves WHERE idx = 4`)
		}, "missing"},
		{"reordered entries", false, func(s *stoppable, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_leaves SET idx = -1 WHERE idx = 5`)
			mustExec(t, db, `UPDATE audit_leaves SET idx = 5 WHERE idx = 6`)
			mustExec(t, db, `UPDATE audit_leaves SET idx = 6 WHERE idx = -1`)
		}, "entry"},
		{"forged tile", false, func(s *stoppable, db *sql.DB) {
			// the log is one partial tile, derived, not stored: a stored
			// one takes its place, and must agree with the checkpoints
			mustExec(t, db, `INSERT INTO audit_tiles (level, idx, width, data) SELECT 0, 0, COUNT(*), zeroblob(32 * COUNT(*)) FROM audit_leaves`)
		}, "tiles"},
		{"truncated under its checkpoint", false, func(s *stoppable, db *sql.DB) {
			mustExec(t, db, `DELETE FROM audit_leaves WHERE idx >= (SELECT MAX(idx) - 2 FROM audit_leaves)`)
		}, "truncated"},
		{"rewrite re-signed with log.key", false, func(s *stoppable, db *sql.DB) {
			rewriteEntry(t, db, 2)
			rebuildAndResign(t, s.dir, db)
		}, "re-signed"},
		{"consistent truncation while down", true, func(s *stoppable, db *sql.DB) {
			truncate(t, s.dir, db, logSize(t, db)-4)
		}, "rolled back"},
		{"rewrite re-signed while down", true, func(s *stoppable, db *sql.DB) {
			rewriteEntry(t, db, 2)
			rebuildAndResign(t, s.dir, db)
		}, "re-signed"},
		{"changed entry while down", true, func(s *stoppable, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_leaves SET data = replace(data, 'tenant.create', 'tenant.read') WHERE idx = 2`)
		}, "commitment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := servedStoppable(t)
			s.c.t = t
			for range 3 {
				s.c.tenant("T")
			}
			if h := healthz(t, s.srv.URL); h.status != http.StatusOK {
				t.Fatalf("healthz before tampering: %d %s", h.status, h.body)
			}
			if r := readyz(t, s.srv.URL); r.status != http.StatusOK {
				t.Fatalf("readyz before tampering: %d %s", r.status, r.body)
			}
			waitVerified(t, s)
			if tc.stopped {
				s.stop()
			}
			db := s.db()
			tc.tamper(s, db)
			if tc.stopped {
				s.start()
			}
			// Not ready: the log check fails with the verifier's reason.
			var r health
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if r = readyz(t, s.srv.URL); r.status != http.StatusOK || time.Now().After(deadline) {
					break
				}
			}
			if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"name":"log","ok":false`) || !strings.Contains(r.body, tc.reason) {
				t.Fatalf("readyz after tampering: %d %s; want 503 with the log check failing on %q", r.status, r.body, tc.reason)
			}
			// Alive still (a liveness probe must not restart it in a loop
			// and bury the finding), and saying why.
			if h := healthz(t, s.srv.URL); h.status != http.StatusOK || !strings.Contains(h.body, `"log_verified":false`) || !strings.Contains(h.body, server.CodeLogTampered) || !strings.Contains(h.body, tc.reason) {
				t.Fatalf("healthz after tampering: %d %s; want 200, log_verified false, %s naming %q", h.status, h.body, server.CodeLogTampered, tc.reason)
			}
			out, err := s.c.run("tenant", "create", "--admin-email", "x@corp.test", "Refused")
			if err == nil || !strings.Contains(out+err.Error(), server.CodeLogTampered) {
				t.Fatalf("an audited write after tampering: %v\n%s; want 503 %s", err, out, server.CodeLogTampered)
			}
			// The log's read API stays up, so anyone can look.
			if resp, err := http.Get(s.srv.URL + "/log/checkpoint"); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("/log/checkpoint after tampering: %v %v", resp, err)
			}
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				var n int
				if err := db.QueryRow(`SELECT count(*) FROM alerts WHERE rule_id = 'log-integrity' AND severity = 'critical'`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no critical log-integrity alert after tampering")
				}
			}
		})
	}
}

type health struct {
	status int
	body   string
}

func healthz(t *testing.T, url string) health {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return health{resp.StatusCode, string(b)}
}

func readyz(t *testing.T, url string) health {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return health{resp.StatusCode, string(b)}
}

// waitVerified waits until the server's verifier has accepted a
// checkpoint covering every entry (it keeps it in the data directory).
func waitVerified(t *testing.T, s *stoppable) {
	t.Helper()
	v, err := node.OpenVerifier(Config{DataDir: s.dir})
	if err != nil {
		t.Fatal(err)
	}
	db := s.db()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(s.dir, node.VerifiedFile))
		cp, err := audit.ParseCheckpoint(b, v)
		if err == nil && cp.Size == uint64(logSize(t, db)) {
			return
		}
	}
	t.Fatal("the server never verified the whole log")
}

// TestPullStateCatchesRewriteUnderSameCheckpoint: the case a pull let
// through before it kept its last entry — a tree changed under a
// checkpoint that did not change, with nothing new for the tenant, passed
// (no checkpoint moved, no entry to check). Each pull now proves the last
// entry it verified again; here the tenant's state says the entry's leaf
// was another one, as it would after the server's tree was rewritten.
func TestPullStateCatchesRewriteUnderSameCheckpoint(t *testing.T) {
	c, dir := served(t)
	tenant, admin := c.tenant("Acme")
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"--tenant", tenant, "--log-key", filepath.Join(dir, "log.pub"), "--state", state}
	c.env["CUSTOS_KEY"] = admin
	if out, err := pullUntil(c, args, 1); err != nil {
		t.Fatalf("honest pull: %v\n%s", err, out)
	}
	if out, err := c.run(append([]string{"audit", "pull"}, args...)...); err != nil {
		t.Fatalf("second honest pull (re-proves the last entry): %v\n%s", err, out)
	}
	b, _ := os.ReadFile(state)
	var st pullState
	if err := json.Unmarshal(b, &st); err != nil || st.LastLeaf == nil {
		t.Fatalf("state keeps no last entry: %s", b)
	}
	st.LastLeaf[0] ^= 1
	b, _ = json.Marshal(st)
	os.WriteFile(state, b, 0o600)
	_, err := c.run(append([]string{"audit", "pull"}, args...)...)
	if err == nil || !strings.Contains(err.Error(), "no longer in the log's tree") {
		t.Fatalf("pull whose last entry is not in the tree: %v; want refused", err)
	}
}

// TestFeedAfterTruncationIsClear: entries removed from under a signed
// checkpoint made the tenant's feed answer a bare 500; it is now the
// 503 log_tampered every audited request gets from a tampered log.
func TestFeedAfterTruncationIsClear(t *testing.T) {
	s := servedStoppable(t)
	tenant, admin := s.c.tenant("Acme")
	for range 2 {
		s.c.tenant("Other")
	}
	waitVerified(t, s)
	db := s.db()
	mustExec(t, db, `DELETE FROM audit_leaves WHERE idx >= (SELECT MAX(idx) - 3 FROM audit_leaves)`)
	truncatedTiles := logSize(t, db)
	rebuildTiles := func() { // the tiles cut back too, as a careful insider would
		// (level 0's partial tile is derived from the rows, not stored: only
		// tiles wholly beyond the rows are left to remove)
		mustExec(t, db, `DELETE FROM audit_tiles WHERE level = 0 AND idx > $1`, (truncatedTiles-1)/256)
	}
	rebuildTiles()
	_, err := client.New(s.srv.URL, client.WithKey(admin), client.WithRetries(0, 0)).AccessLog(context.Background(), tenant, 0, 0)
	if ce, ok := httpError(err); !ok || ce.Status != http.StatusServiceUnavailable || ce.Err.Code != server.CodeLogTampered {
		t.Fatalf("feed after truncation: %v; want 503 %s", err, server.CodeLogTampered)
	}
	s.c.env["CUSTOS_KEY"] = admin
	out, err := s.c.run("audit", "pull", "--tenant", tenant, "--log-key", filepath.Join(s.dir, "log.pub"), "--state", filepath.Join(t.TempDir(), "st.json"))
	if err == nil || !strings.Contains(out+err.Error(), server.CodeLogTampered) {
		t.Fatalf("audit pull after truncation: %v\n%s; want %s", err, out, server.CodeLogTampered)
	}
}

func containsAnyOf(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

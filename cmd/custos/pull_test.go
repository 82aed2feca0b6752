package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/custos-dev/custos/vault"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
)

var seqRE = regexp.MustCompile(`tenant_seq \d+\.\.(\d+)`)

// pullUntil runs `custos audit pull` until it has verified up to at least
// seq (checkpoints are signed once a second) or it fails; it returns the
// last output and error.
func pullUntil(c *cli, args []string, seq uint64) (string, error) {
	c.t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err = c.run(append([]string{"audit", "pull"}, args...)...)
		if err != nil {
			return out, err
		}
		if m := seqRE.FindStringSubmatch(out); m != nil {
			if n, _ := strconv.ParseUint(m[1], 10, 64); n >= seq {
				return out, nil
			}
		}
	}
	c.t.Fatalf("audit pull never reached tenant_seq %d:\n%s", seq, out)
	return "", nil
}

// TestAuditPull runs the tenant's side of the access feed against a live
// server: honest pulls verify and resume; a changed body, a removed entry
// (gap), a rolled-back log and a forked log are each refused with their
// cause.
func TestAuditPull(t *testing.T) {
	c, dir := served(t)
	tenant, admin := c.tenant("Acme")
	c.env["CUSTOS_KEY"] = admin
	list := idRE("ls").FindString(c.must("list", "create", "--tenant", tenant, "news"))
	for i := range 3 {
		c.must("contact", "add", "--tenant", tenant, "--list", list, fmt.Sprintf("p%d@example.test", i))
	}
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"--tenant", tenant, "--log-key", filepath.Join(dir, "log.pub"), "--state", state}

	// tenant.create, list.create and three contact.create entries, and
	// the create of the list's first canary, which rides its first create
	// with a leaf of its own (docs/detection.md, "Lists grown by creates").
	out, err := pullUntil(c, args, 6)
	if err != nil {
		t.Fatalf("honest pull refused: %v\n%s", err, out)
	}
	if n := strings.Count(out, "contact.create"); n < 4 || n > 3+3*vault.DefaultCanaries || !strings.Contains(out, "no gap") {
		t.Fatalf("pull output:\n%s", out)
	}
	var st pullState
	b, _ := os.ReadFile(state)
	json.Unmarshal(b, &st)

	// Removal: an insider deletes the next entry of the tenant.
	c.must("contact", "add", "--tenant", tenant, "--list", list, "late1@example.test")
	c.must("contact", "add", "--tenant", tenant, "--list", list, "late2@example.test")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "custos.db")+"?_pragma=busy_timeout(10000)") // the server writes too
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// A changed body: an insider rewrites what the next entry says. The
	// pull recomputes its leaf from body and salt, and the tree refuses it.
	// The server's own verifier checks each new entry once: the change is
	// made after it did, so that what this test sees is the pull's check
	// (before, the server stops serving instead: audit/monitor_test.go).
	var body []byte
	var idx uint64
	if err := db.QueryRow(`SELECT data, idx FROM audit_leaves WHERE tenant_id = $1 AND tenant_seq = $2`, tenant, st.TenantSeq+1).Scan(&body, &idx); err != nil {
		t.Fatal(err)
	}
	waitServerVerified(t, dir, idx+1)
	forged := strings.Replace(string(body), `"outcome":"ok"`, `"outcome":"denied"`, 1)
	if _, err := db.Exec(`UPDATE audit_leaves SET data = $1 WHERE tenant_id = $2 AND tenant_seq = $3`, []byte(forged), tenant, st.TenantSeq+1); err != nil {
		t.Fatal(err)
	}
	_, err = pullUntil(c, args, st.TenantSeq+1)
	if err == nil || !strings.Contains(err.Error(), "inclusion proof does not verify") {
		t.Fatalf("pull of a changed body: %v; want the inclusion proof refused", err)
	}
	if _, err := db.Exec(`UPDATE audit_leaves SET data = $1 WHERE tenant_id = $2 AND tenant_seq = $3`, body, tenant, st.TenantSeq+1); err != nil {
		t.Fatal(err)
	}

	// A removed entry. Level 0's partial tile is derived from the rows
	// (audit/tiles.go), so a bare DELETE would stop the server's own
	// proofs; a careful insider first stores the edge tile as it was, so
	// the server keeps serving and only the pull's sequence check is left.
	keepEdgeTile(t, db, idx)
	if _, err := db.Exec(`DELETE FROM audit_leaves WHERE tenant_id = $1 AND tenant_seq = $2`, tenant, st.TenantSeq+1); err != nil {
		t.Fatal(err)
	}
	_, err = pullUntil(c, args, st.TenantSeq+3)
	if err == nil || !strings.Contains(err.Error(), "tenant sequence gap") {
		t.Fatalf("pull after a removed entry: %v; want a tenant sequence gap", err)
	}

	// Rollback and fork: the tenant holds a checkpoint the server's log
	// cannot be consistent with — larger than the log (the server was
	// restored from an older backup), or of a size it has passed but with
	// another root (the server showed someone else a different log).
	skey, _ := os.ReadFile(filepath.Join(dir, "log.key"))
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		size uint64
		want string
	}{{1 << 40, "rollback"}, {3, "fork"}} {
		root := make([]byte, 32)
		root[0] = 7
		msg, _ := note.Sign(&note.Note{Text: fmt.Sprintf("custos.local/log\n%d\n%s\n", tc.size, base64.StdEncoding.EncodeToString(root))}, signer)
		b, _ := json.Marshal(pullState{Tenant: tenant, Checkpoint: string(msg), TenantSeq: 0})
		os.WriteFile(state, b, 0o600)
		_, err := c.run(append([]string{"audit", "pull"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pull holding a forged checkpoint of size %d: %v; want %s", tc.size, err, tc.want)
		}
	}
}

// TestOfflineProof writes a proof with `log proof --out` and checks it with
// `verify-proof` and nothing else; an altered proof is refused.
func TestOfflineProof(t *testing.T) {
	c, dir := served(t)
	for range 4 {
		c.tenant("T")
	}
	proof := filepath.Join(t.TempDir(), "entry.tlog-proof")
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = c.run("log", "proof", "--index", "2", "--out", proof); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("log proof: %v\n%s", err, out)
	}
	pub := filepath.Join(dir, "log.pub")
	got := (&cli{t: t, env: map[string]string{}}).must("verify-proof", proof, "--log-key", pub)
	if !strings.Contains(got, "verified: entry 2") || !strings.Contains(got, "tenant.create") {
		t.Fatalf("verify-proof output:\n%s", got)
	}
	// --key, the flag's older name here, still works.
	if got := (&cli{t: t, env: map[string]string{}}).must("verify-proof", proof, "--key", pub); !strings.Contains(got, "verified: entry 2") {
		t.Fatalf("verify-proof --key:\n%s", got)
	}
	b, _ := os.ReadFile(proof)
	forged := strings.Replace(string(b), "index 2\n", "index 1\n", 1)
	os.WriteFile(proof, []byte(forged), 0o644)
	if _, err := (&cli{t: t, env: map[string]string{}}).run("verify-proof", proof, "--log-key", pub); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("verify-proof of a forged proof: %v", err)
	}
}

// TestAuditPullServerGone: a node that dies between the feed and the
// re-proof of the last verified entry is no tamper alarm. The pull says
// the server could not be reached and exits 4; REFUSED is for a proof
// that fails, and the trusted state stays as it was.
func TestAuditPullServerGone(t *testing.T) {
	s := servedStoppable(t)
	tenant, admin := s.c.tenant("Acme")
	s.c.env["CUSTOS_KEY"] = admin
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"--tenant", tenant, "--log-key", filepath.Join(s.dir, "log.pub"), "--state", state}
	if out, err := pullUntil(s.c, args, 1); err != nil {
		t.Fatalf("honest pull refused: %v\n%s", err, out)
	}
	before, _ := os.ReadFile(state)

	// In front of the node, a proxy that passes the feed and, when the
	// re-proof is asked for, stops the node and drops the connection.
	backend, _ := url.Parse(s.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(backend)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/proof/inclusion") {
			rp.ServeHTTP(w, r)
			return
		}
		s.stop()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer proxy.Close()
	s.c.env["CUSTOS_SERVER"] = proxy.URL

	var out bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(k string) string { return s.c.env[k] }}
	code := m.Exec(context.Background(), append([]string{"audit", "pull"}, args...))
	if code != exitRetry || strings.Contains(out.String(), "REFUSED") || !strings.Contains(out.String(), "UNAVAILABLE") {
		t.Fatalf("pull from a node gone midway: exit %d\n%s\nwant exit %d, UNAVAILABLE, no REFUSED", code, out.String(), exitRetry)
	}
	if after, _ := os.ReadFile(state); !bytes.Equal(before, after) {
		t.Fatalf("the trusted state changed:\n%s\nwas\n%s", after, before)
	}
}

// waitServerVerified waits until the server's own log verifier has
// verified at least size entries (the checkpoint it keeps in the data
// directory, node.VerifiedFile).
func waitServerVerified(t *testing.T, dir string, size uint64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(dir, node.VerifiedFile))
		if err != nil {
			continue
		}
		if lines := strings.SplitN(string(b), "\n", 3); len(lines) == 3 {
			if n, err := strconv.ParseUint(lines[1], 10, 64); err == nil && n >= size {
				return
			}
		}
	}
	t.Fatalf("the server's log verifier never reached size %d", size)
}

// TestAuditPullAfterTenantDeletion: once a tenant is deleted (keys
// shredded, rows purged), its admin still pulls the tenant's feed and
// verifies it, and the feed shows the deletion — the system's
// tenant.delete and tenant.purge entries — after what it verified
// before, with no gap.
func TestAuditPullAfterTenantDeletion(t *testing.T) {
	s := servedStoppable(t)
	tenant, admin := s.c.tenant("Leaving")
	s.c.env["CUSTOS_KEY"] = admin
	list := idRE("ls").FindString(s.c.must("list", "create", "--tenant", tenant, "news"))
	s.c.must("contact", "add", "--tenant", tenant, "--list", list, "leaving.person@example.test")
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"--tenant", tenant, "--log-key", filepath.Join(s.dir, "log.pub"), "--state", state}
	if out, err := pullUntil(s.c, args, 3); err != nil { // tenant.create, list.create, contact.create
		t.Fatalf("pull before the deletion: %v\n%s", err, out)
	}

	s.c.must("delete", "tenant", "--tenant", tenant)
	// The node's loop runs due deletions on its own clock; no grace is
	// shorter than a day, so the test runs it at the due time, as the demo
	// does.
	if n, err := s.srv.Vault.RunDueDeletions(context.Background(), time.Now().Add(custos.DefaultDeletionGrace+time.Minute)); err != nil || n != 1 {
		t.Fatalf("deletion ran %d, %v", n, err)
	}
	if out, err := s.c.run("contact", "ls", "--tenant", tenant, "--list", list); err == nil || !strings.Contains(out+err.Error(), "gone") {
		t.Fatalf("the deleted tenant's list: %v\n%s", err, out)
	}

	var seen strings.Builder
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(seen.String(), "tenant.purge"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the tenant's feed never showed its purge; pulled:\n%s", seen.String())
		}
		out, err := s.c.run(append([]string{"audit", "pull"}, args...)...)
		if err != nil {
			t.Fatalf("pull after the deletion: %v\n%s", err, out)
		}
		if !strings.Contains(out, "no gap") {
			t.Fatalf("pull after the deletion:\n%s", out)
		}
		seen.WriteString(out)
	}
	var del, purge int
	for _, line := range strings.Split(seen.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[3] != "system" {
			continue
		}
		switch f[4] {
		case "tenant.delete":
			del++
		case "tenant.purge":
			purge++
		}
	}
	if del != 1 || purge != 1 {
		t.Fatalf("the feed after the deletion shows %d tenant.delete and %d tenant.purge entries by system, want 1 and 1:\n%s", del, purge, seen.String())
	}
}

// TestAuditPullPageProofs: the pull asks for page proofs; in front of a
// server from before them (one that refuses proofs=page as EINVALID) it
// falls back to shared proofs and verifies the same entries; a server
// that leaves the page proof out, or changes a byte of it, is refused and
// the trusted state stays as it was.
func TestAuditPullPageProofs(t *testing.T) {
	s := servedStoppable(t)
	tenant, admin := s.c.tenant("Acme")
	s.c.env["CUSTOS_KEY"] = admin
	args := func(state string) []string {
		return []string{"--tenant", tenant, "--log-key", filepath.Join(s.dir, "log.pub"), "--state", state}
	}
	backend, _ := url.Parse(s.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(backend)
	var asked []string
	mode := "old"
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/access-log") {
			rp.ServeHTTP(w, r)
			return
		}
		q := r.URL.Query()
		asked = append(asked, q.Get("proofs"))
		if mode == "old" {
			if q.Get("proofs") == "page" {
				q.Set("proofs", "page-unknown") // the server refuses it as an old one refused "page"
			}
			r.URL.RawQuery = q.Encode()
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		var f map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &f); err != nil || f["page_proof"] == nil {
			t.Errorf("no page proof to tamper with: %v %s", err, rec.Body.String())
		}
		if mode == "drop" {
			delete(f, "page_proof")
		} else {
			p, _ := base64.StdEncoding.DecodeString(f["page_proof"].(string))
			p[len(p)/2] ^= 1
			f["page_proof"] = base64.StdEncoding.EncodeToString(p)
		}
		b, _ := json.Marshal(f)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	defer proxy.Close()

	// Honest, straight to the server: page proofs.
	state := filepath.Join(t.TempDir(), "state.json")
	if out, err := pullUntil(s.c, args(state), 1); err != nil {
		t.Fatalf("honest pull refused: %v\n%s", err, out)
	}
	// Through the "old server": the same entries, verified with shared proofs.
	s.c.env["CUSTOS_SERVER"] = proxy.URL
	old := filepath.Join(t.TempDir(), "old.json")
	if out, err := pullUntil(s.c, args(old), 1); err != nil {
		t.Fatalf("pull from an old server refused: %v\n%s", err, out)
	}
	if len(asked) < 2 || asked[0] != "page" || asked[1] != "shared" {
		t.Fatalf("asked the old server for proofs %q, want page then shared", asked)
	}
	for _, m := range []string{"drop", "flip"} {
		mode = m
		fresh := filepath.Join(t.TempDir(), m+".json")
		out, err := s.c.run(append([]string{"audit", "pull"}, args(fresh)...)...)
		if err == nil || !strings.Contains(out+err.Error(), "REFUSED") {
			t.Fatalf("a page with its proof %s was not refused: %v\n%s", m, err, out)
		}
		if _, err := os.Stat(fresh); err == nil {
			b, _ := os.ReadFile(fresh)
			var st pullState
			json.Unmarshal(b, &st)
			if st.TenantSeq != 0 {
				t.Fatalf("a refused page moved the trusted state to tenant_seq %d", st.TenantSeq)
			}
		}
	}
}

// keepEdgeTile stores level 0's tile over entry idx as the leaves now
// give it, as a row of audit_tiles, so later changes to those leaves no
// longer show in the tiles the server proves from.
func keepEdgeTile(t *testing.T, db *sql.DB, idx uint64) {
	t.Helper()
	n := int64(idx) >> 8
	leaves := storetest.Column[[]byte](t, db, `SELECT COALESCE(leaf, data) FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx`, n<<8, (n+1)<<8)
	var data []byte
	for _, l := range leaves {
		h := tlog.RecordHash(l)
		data = append(data, h[:]...)
	}
	mustExec(t, db, `INSERT INTO audit_tiles (level, idx, width, data) VALUES (0, $1, $2, $3) ON CONFLICT (level, idx) DO UPDATE SET width = excluded.width, data = excluded.data`, n, len(leaves), data)
}

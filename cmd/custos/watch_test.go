package main

import (
	"database/sql"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
)

// TestLogWatch follows a live log across growth, then is shown a split
// view (another root for the size it trusts) through a lying proxy, and a
// rolled-back log: it must refuse both.
func TestLogWatch(t *testing.T) {
	c, dir := served(t)
	srv := c.env["CUSTOS_SERVER"]
	pub := filepath.Join(dir, "log.pub")
	state := filepath.Join(t.TempDir(), "watch.cp")
	w := &cli{t: t, env: map[string]string{}}
	watch := func(url string) (string, error) {
		return w.run("log", "watch", url, "--log-key", pub, "--state", state, "--once")
	}
	trusted := func() *audit.Checkpoint {
		b, _ := os.ReadFile(state)
		v, _ := loadVerifier(pub)
		cp, err := audit.ParseCheckpoint(b, v)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	// growTo creates tenants until the watcher has followed the log to at
	// least n entries (checkpoints are signed once a second).
	growTo := func(n uint64) {
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			c.tenant("T")
			if out, err := watch(srv); err != nil {
				t.Fatalf("watch of an honest log: %v\n%s", err, out)
			}
			if trusted().Size >= n {
				return
			}
		}
		t.Fatalf("log never reached %d entries", n)
	}
	growTo(5)
	growTo(trusted().Size + 3)

	skey, _ := os.ReadFile(filepath.Join(dir, "log.key"))
	signer, _ := note.NewSigner(strings.TrimSpace(string(skey)))
	forge := func(size uint64) []byte {
		root := make([]byte, 32)
		root[0] = 9
		msg, _ := note.Sign(&note.Note{Text: fmt.Sprintf("custos.local/log\n%d\n%s\n", size, base64.StdEncoding.EncodeToString(root))}, signer)
		return msg
	}
	// Split view: a proxy that shows this watcher another tree of the size
	// it already trusts.
	target, _ := url.Parse(srv)
	rp := httputil.NewSingleHostReverseProxy(target)
	size := trusted().Size
	liar := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/log/checkpoint" {
			rw.Write(forge(size))
			return
		}
		rp.ServeHTTP(rw, r)
	}))
	defer liar.Close()
	if _, err := watch(liar.URL); err == nil || !strings.Contains(err.Error(), "fork") {
		t.Fatalf("watch shown a split view: %v; want a fork", err)
	}
	// Rollback: the watcher holds a checkpoint larger than what the server
	// now shows (as after a restore from an older backup).
	os.WriteFile(state, forge(size+1000), 0o644)
	if _, err := watch(srv); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("watch of a rolled-back log: %v; want a rollback", err)
	}
}

// TestLogWatchCatchesRestoredBackup restores an older copy of the
// database under the server: a watcher that trusted a later checkpoint
// refuses the log.
func TestLogWatchCatchesRestoredBackup(t *testing.T) {
	c := initialised(t)
	dir := c.dir
	srv := startServer(t, dir)
	c.env["CUSTOS_SERVER"], c.env["CUSTOS_KEY"] = srv.URL, c.op
	for range 3 {
		c.tenant("Before")
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "custos.db")+"?_pragma=busy_timeout(10000)") // the server writes too
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`VACUUM INTO '` + backup + `'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var backupSize uint64
	bdb, _ := sql.Open("sqlite", "file:"+backup+"?mode=ro")
	bdb.QueryRow(`SELECT MAX(size) FROM audit_checkpoints`).Scan(&backupSize)
	bdb.Close()

	pub := filepath.Join(dir, "log.pub")
	state := filepath.Join(t.TempDir(), "watch.cp")
	w := &cli{t: t, env: map[string]string{}}
	v, _ := loadVerifier(pub)
	// Grow the log until the watcher trusts a checkpoint beyond the backup.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("watcher never trusted a checkpoint beyond the backup")
		}
		c.tenant("After")
		if out, err := w.run("log", "watch", srv.URL, "--log-key", pub, "--state", state, "--once"); err != nil {
			t.Fatalf("watch: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(state)
		if cp, err := audit.ParseCheckpoint(b, v); err == nil && cp.Size > backupSize+2 {
			break
		}
	}
	srv.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(dir, "custos.db") + suffix)
	}
	b, _ := os.ReadFile(backup)
	os.WriteFile(filepath.Join(dir, "custos.db"), b, 0o600)
	srv = startServer(t, dir)
	defer srv.Close()
	_, err = w.run("log", "watch", srv.URL, "--log-key", pub, "--state", state, "--once")
	if err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("watch after the database was restored from a backup: %v; want a rollback", err)
	}
}

package main

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// TestLogVerifyRows: `custos log verify --rows`, as a user types it, on
// an initialised data directory: clean, then an api_keys row inserted
// behind custos's back is named, and the command fails.
func TestLogVerifyRows(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := &cli{t: t, env: map[string]string{"CUSTOS_DATA": dir}, dir: dir, seen: map[string]bool{}}
	c.must("init")
	if got := c.must("log", "verify", "--rows"); !strings.Contains(got, "data OK") {
		t.Fatalf("clean data directory: %s", got)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	var principal string
	if err := db.QueryRow(`SELECT id FROM principals LIMIT 1`).Scan(&principal); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO api_keys (id, principal_id, hash, hint, scopes, created_at) VALUES ('ak_forgedforgedforgedforgedfo', ?, x'00', 'x', 'all', 0)`, principal); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out, err := c.run("log", "verify", "--rows")
	if err == nil || !strings.Contains(out, "inserted: api_keys ak_forgedforgedforgedforgedfo") {
		t.Fatalf("forged key row: err %v, output:\n%s", err, out)
	}
}

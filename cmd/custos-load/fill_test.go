package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/custos-dev/custos/ingest"
)

// TestFillVerifies: a kept deployment filled in chunks through the import
// route, then resumed by a second fill (after a killed fill's partial chunk), holds exactly the contacts asked
// for, all of them distinct, and passes `custos log verify --rows`'s check
// (every row against its MAC and the rows against the log) with no finding.
// The GET loads over the kept deployment read contacts of the fill.
func TestFillVerifies(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	nd, in, k, err := openKept(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	// count returns the list's rows, and those of them that are not
	// canaries (the canary index tells: a list grown by creates gets
	// some of its canaries at later imports, so they are not all in base).
	count := func() (rows, real int) {
		t.Helper()
		idx, err := nd.Vault.CanaryIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tags, err := idx.Tags(ctx)
		if err != nil {
			t.Fatal(err)
		}
		toks, err := nd.DB.Read.QueryContext(ctx, `SELECT token FROM contacts WHERE list_id = $1`, k.List)
		if err != nil {
			t.Fatal(err)
		}
		defer toks.Close()
		for toks.Next() {
			var tok string
			if err := toks.Scan(&tok); err != nil {
				t.Fatal(err)
			}
			rows++
			if !tags[idx.Tag(tok)] {
				real++
			}
		}
		if err := toks.Err(); err != nil {
			t.Fatal(err)
		}
		return rows, real
	}
	_, base := count() // the GET contact
	if err := fill(ctx, in, k, dir, 1500, 600, io.Discard); err != nil {
		nd.Close()
		t.Fatal(err)
	}
	nd.Close()

	// Resumed: the second run starts where the first stopped.
	nd, in, k, err = openKept(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	if k.Contacts != 1500 {
		t.Fatalf("kept contacts = %d, want 1500", k.Contacts)
	}
	// A fill killed in its next chunk had imported part of it already.
	var part bytes.Buffer
	if err := ingest.GenerateFrom(&part, "csv", 1500, 100, 1); err != nil {
		t.Fatal(err)
	}
	if res, err := in.as(in.admin).Import(ctx, in.tenant, in.list, "csv", &part); err != nil || res.Imported != 100 {
		t.Fatalf("partial chunk: %+v, %v", res, err)
	}
	if err := fill(ctx, in, k, dir, 2000, 600, io.Discard); err != nil {
		t.Fatal(err)
	}
	rows, real := count()
	if real != base+2000 {
		t.Fatalf("list holds %d contacts besides its canaries, want %d", real, base+2000)
	}
	rep, err := nd.Vault.VerifyData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) > 0 || rep.Rows < rows {
		t.Fatalf("verify data: %d rows checked, findings %v", rep.Rows, rep.Findings)
	}
	toks, err := sampleTokens(ctx, nd, k.List, 100)
	if err != nil || len(toks) != 100 {
		t.Fatalf("sampleTokens = %d tokens, %v", len(toks), err)
	}
	r := loadTokens([]string{in.url}, in.admin, in.tenant, toks, 2, 200*1e6, nil)
	if r.errors != 0 || r.rps == 0 {
		t.Fatalf("GETs over the filled contacts: %+v", r)
	}
}

// TestPagesRuns: the pages run on a small kept deployment grows the
// tenant's log to what it was asked, signs in as the admin and a
// security engineer, and gets a 200 from every page it times (any other
// status fails the run); a second run reuses the kept keys.
func TestPagesRuns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	nd, in, k, err := openKept(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fill(ctx, in, k, dir, 200, 200, io.Discard); err != nil {
		t.Fatal(err)
	}
	nd.Close()
	for range 2 {
		if err := runPages([]string{"-dir", dir, "-entries", "3000", "-subject", "100", "-n", "2"}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, keptFile))
	if err != nil {
		t.Fatal(err)
	}
	var kk kept
	if err := json.Unmarshal(b, &kk); err != nil || kk.Security == "" || kk.Subject == "" {
		t.Fatalf("kept: %+v, %v", kk, err)
	}
}

package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// logEntry is the answer of GET /v1/log/entries/{index}.
type logEntry struct {
	Index uint64
	Body  json.RawMessage
	Salt  []byte
	Leaf  []byte
}

// TestLogEntriesArePrivate: tenant A's identifiers — its id, its
// principals and keys, its list, its contact tokens — appear nowhere in
// what the log API answers tenant B's admin and service keys, a support
// engineer or anyone without a key (entries, entry bundles, tiles,
// checkpoints, proofs, feeds); security staff read every body, and an
// admin reads its own tenant's entries, each opening the leaf the tree
// holds.
func TestLogEntriesArePrivate(t *testing.T) {
	e := newEnv(t)
	a := e.newTenant("Alpha")
	b := e.newTenant("Beta")
	for _, f := range []tenantFixture{a, b} {
		base := "/v1/tenants/" + f.tenant
		c := decode[custos.Contact](t, e.postJSON(f.admin, base+"/lists/"+f.list+"/contacts", map[string]any{"email": e.email()}, 201))
		e.get(f.admin, base+"/contacts/"+c.Token, 200)
		e.get(f.service, base+"/lists/"+f.list+"/tokens", 200)
	}
	support, _ := e.keyFor(custos.KindStaffSupport, "", "sam")
	security, _ := e.keyFor(custos.KindStaffSecurity, "", "sec")
	e.sync()
	cp, err := e.log.SignCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	size := cp.Size

	// A's identifiers, from the bodies of the entries that concern it.
	secrets := map[string]bool{a.tenant: true, a.list: true}
	var aEntry, bEntry, noTenant uint64 = size, size, size
	ofB := map[uint64]bool{}
	all, err := e.log.Entries(t.Context(), 0, int(size))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		var l audit.Leaf
		if err := json.Unmarshal(s.Data, &l); err != nil {
			t.Fatal(err)
		}
		switch {
		case l.Tenant == a.tenant:
			aEntry = s.Index
			if custos.Kind(l.ActorKind).TenantBound() {
				secrets[l.Actor], secrets[l.KeyID] = true, true
			}
			if l.List != "" {
				secrets[l.List] = true
			}
			for _, tok := range l.Tokens {
				secrets[tok] = true
			}
		case l.Tenant == b.tenant:
			bEntry, ofB[s.Index] = s.Index, true
		case l.Tenant == "":
			noTenant = s.Index
		}
	}
	delete(secrets, "")
	if aEntry == size || bEntry == size || noTenant == size || len(secrets) < 5 {
		t.Fatalf("fixture: entries A %d, B %d, none %d; %d identifiers of A", aEntry, bEntry, noTenant, len(secrets))
	}

	// Everything the log API answers each outsider.
	for name, key := range map[string]string{"anonymous": "", "B's admin": b.admin, "B's service": b.service, "support staff": support} {
		var seen bytes.Buffer
		get := func(path string) []byte {
			_, body := e.send(key, "GET", path, "", nil)
			seen.Write(body)
			return body
		}
		for i := range size {
			st, body := e.send(key, "GET", fmt.Sprintf("/v1/log/entries/%d", i), "", nil)
			seen.Write(body)
			own := key == b.admin && ofB[i]
			if own != (st == 200) {
				t.Errorf("%s: entry %d: status %d", name, i, st)
			}
			if st != 200 && key != "" {
				// Indistinguishable from an entry that does not exist.
				if _, absent := e.send(key, "GET", fmt.Sprintf("/v1/log/entries/%d", size+1000), "", nil); errorOf(t, absent).Error != errorOf(t, body).Error { // code and message, not the request id
					t.Errorf("%s: entry %d answers %s, an absent one %s", name, i, body, absent)
				}
			}
			get(fmt.Sprintf("/v1/log/proof/inclusion?index=%d&size=%d", i, size))
		}
		for n := uint64(0); n*256 < size; n++ {
			w := min(256, size-n*256)
			path := fmt.Sprintf("/log/tile/entries/%03d", n)
			tile := fmt.Sprintf("/log/tile/0/%03d", n)
			if w < 256 {
				path, tile = fmt.Sprintf("%s.p/%d", path, w), fmt.Sprintf("%s.p/%d", tile, w)
			}
			if st, body := e.send(key, "GET", path, "", nil); st != 200 {
				t.Fatalf("%s: entry bundle %s: status %d %s", name, path, st, body)
			} else {
				seen.Write(body)
			}
			get(tile)
		}
		get("/log/checkpoint")
		get("/v1/log/checkpoint")
		get(fmt.Sprintf("/v1/log/proof/consistency?from=1&to=%d", size))
		get("/v1/tenants/" + a.tenant + "/access-log")
		get("/v1/tenants/" + b.tenant + "/access-log")
		for s := range secrets {
			if bytes.Contains(seen.Bytes(), []byte(s)) {
				t.Errorf("%s sees tenant A's identifier %s in the log API", name, s)
			}
		}
	}

	// Security staff read any body; it opens the leaf the tree holds.
	root, err := e.log.TreeHash(t.Context(), size)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{aEntry, bEntry, noTenant} {
		got := decode[logEntry](t, e.get(security, fmt.Sprintf("/v1/log/entries/%d", i), 200))
		if leaf, err := audit.LeafOf(got.Body, got.Salt); err != nil || !bytes.Equal(leaf, got.Leaf) {
			t.Fatalf("entry %d: body and salt do not open the leaf (%v)", i, err)
		}
		p, err := e.log.InclusionProof(t.Context(), i, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, int64(size), root, int64(i), tlog.RecordHash(got.Leaf)); err != nil {
			t.Fatalf("entry %d's leaf is not in the tree: %v", i, err)
		}
	}
	if got := decode[logEntry](t, e.get(security, fmt.Sprintf("/v1/log/entries/%d", aEntry), 200)); !strings.Contains(string(got.Body), a.tenant) {
		t.Fatalf("security staff's view of A's entry: %s", got.Body)
	}
	// A's admin reads its own entries only.
	if got := decode[logEntry](t, e.get(a.admin, fmt.Sprintf("/v1/log/entries/%d", aEntry), 200)); !strings.Contains(string(got.Body), a.tenant) {
		t.Fatalf("A's admin's view of its entry: %s", got.Body)
	}
	e.get(a.admin, fmt.Sprintf("/v1/log/entries/%d", bEntry), 404)
	e.get(a.admin, fmt.Sprintf("/v1/log/entries/%d", noTenant), 404)
	e.get(a.editor, fmt.Sprintf("/v1/log/entries/%d", aEntry), 404)
	e.get(e.operator, fmt.Sprintf("/v1/log/entries/%d", aEntry), 404)
}

// TestFeedCatchesChangedBody: a body changed in the database reaches the
// tenant through its feed, where it no longer opens the leaf in the tree;
// the detector's read and the security view refuse it too.
func TestFeedCatchesChangedBody(t *testing.T) {
	e := newEnvNoMonitor(t)
	a := e.newTenant("Alpha")
	e.sync()
	if _, err := e.log.SignCheckpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	security, _ := e.keyFor(custos.KindStaffSecurity, "", "sec")
	feedPath := "/v1/tenants/" + a.tenant + "/access-log"
	feed := decode[audit.Feed](t, e.get(a.admin, feedPath, 200))
	cp, err := audit.ParseCheckpoint(feed.Checkpoint, e.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if len(feed.Entries) == 0 {
		t.Fatal("empty feed")
	}
	for i, fe := range feed.Entries {
		if len(fe.Salt) != audit.SaltSize {
			t.Fatalf("feed entry %d has no salt", i)
		}
		if err := audit.CheckFeedEntry(cp, fe, a.tenant, uint64(i)+1); err != nil {
			t.Fatalf("honest feed entry %d: %v", i, err)
		}
	}
	// The same page with one page proof (?proofs=page) verifies whole.
	paged := decode[audit.Feed](t, e.get(a.admin, feedPath+"?proofs=page", 200))
	if len(paged.Entries) != len(feed.Entries) || len(paged.PageProof) == 0 {
		t.Fatalf("page-proved page: %d entries, %d proof bytes", len(paged.Entries), len(paged.PageProof))
	}
	if err := audit.CheckFeedPage(cp, paged.Entries, paged.PageProof, a.tenant, 1); err != nil {
		t.Fatalf("honest page-proved page: %v", err)
	}
	victim := feed.Entries[0]
	for _, col := range []string{"data", "salt"} {
		var orig []byte
		if err := e.db.Read.QueryRow(`SELECT `+col+` FROM audit_leaves WHERE idx = $1`, int64(victim.Index)).Scan(&orig); err != nil {
			t.Fatal(err)
		}
		forged := bytes.Clone(orig)
		if col == "data" {
			forged = bytes.Replace(forged, []byte(`"outcome":"ok"`), []byte(`"outcome":"error"`), 1)
		} else {
			forged[0] ^= 1
		}
		if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET `+col+` = $1 WHERE idx = $2`, forged, int64(victim.Index)); err != nil {
			t.Fatal(err)
		}
		got := decode[audit.Feed](t, e.get(a.admin, feedPath, 200))
		if err := audit.CheckFeedEntry(cp, got.Entries[0], a.tenant, 1); err == nil {
			t.Errorf("feed entry with a changed %s verified", col)
		}
		paged := decode[audit.Feed](t, e.get(a.admin, feedPath+"?proofs=page", 200))
		if err := audit.CheckFeedPage(cp, paged.Entries, paged.PageProof, a.tenant, 1); err == nil {
			t.Errorf("a page proof with a changed %s verified", col)
		}
		if _, err := e.log.Entries(t.Context(), victim.Index, 1); err == nil {
			t.Errorf("Entries read an entry with a changed %s", col)
		}
		if st, _ := e.send(security, "GET", fmt.Sprintf("/v1/log/entries/%d", victim.Index), "", nil); st == 200 {
			t.Errorf("an entry with a changed %s was served", col)
		}
		// Put it back: the environment verifies the log at the end.
		if _, err := e.db.Write.Exec(`UPDATE audit_leaves SET `+col+` = $1 WHERE idx = $2`, orig, int64(victim.Index)); err != nil {
			t.Fatal(err)
		}
	}
}

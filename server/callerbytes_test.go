package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/server"
)

// Issue 13, finding 1: caller bytes never reach a leaf.

// vocabulary returns every word of every string literal in the program's
// non-test sources: the only words a leaf's free text (reason, detail) may
// hold besides identifiers, numbers and times. A word a caller chose that
// is in no literal of ours is a caller's byte in a leaf.
func vocabulary(t testing.TB) map[string]bool {
	t.Helper()
	words := map[string]bool{}
	fset := token.NewFileSet()
	root := ".."
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != root) {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					for _, w := range wordSplit.Split(s, -1) {
						words[w] = true
					}
				}
			}
			return true
		})
		return nil
	})
	return words
}

var (
	wordSplit = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
	number    = regexp.MustCompile(`^[0-9TZ-]+$`) // counts, lines, times' pieces
	digest    = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	// ids are the identifier prefixes; an id in free text is checked as one.
	ids = []string{custos.PrefixTenant, custos.PrefixList, custos.PrefixContact, custos.PrefixPrincipal, custos.PrefixKey, custos.PrefixRequest,
		custos.PrefixAccessReq, custos.PrefixGrant, custos.PrefixReveal, custos.PrefixAlert, custos.PrefixEnrollment, "ca"}
)

func anyID(s string) bool {
	return slices.ContainsFunc(ids, func(p string) bool { return custos.ValidID(p, s) })
}

// checkLeaf fails the test for a leaf field that holds anything but an
// identifier of the field's kind, an enum value, a fixed placeholder, or —
// in free text — words of the program's own literals, numbers and ids.
func checkLeaf(t testing.TB, l audit.Leaf, vocab map[string]bool, actions map[string]bool) {
	t.Helper()
	idOr := func(field, prefix, v string, also ...string) {
		if v != "" && v != "invalid" && !custos.ValidID(prefix, v) && !slices.Contains(also, v) {
			t.Errorf("leaf %s %q is not a %s_ id: %+v", field, v, prefix, l)
		}
	}
	idOr("request_id", custos.PrefixRequest, l.RequestID)
	idOr("actor", custos.PrefixPrincipal, l.Actor, "anonymous", "system", "bootstrap")
	idOr("key_id", custos.PrefixKey, l.KeyID)
	idOr("tenant", custos.PrefixTenant, l.Tenant)
	idOr("list", custos.PrefixList, l.List)
	for _, tok := range l.Tokens {
		idOr("token", custos.PrefixContact, tok)
	}
	if l.ActorKind != "" && !custos.Kind(l.ActorKind).Valid() {
		t.Errorf("leaf actor_kind %q", l.ActorKind)
	}
	if l.Source != "" {
		if _, err := netip.ParseAddr(l.Source); err != nil {
			t.Errorf("leaf source %q is not an address", l.Source)
		}
	}
	if !actions[l.Action] {
		t.Errorf("leaf action %q is not an action", l.Action)
	}
	if !slices.Contains([]string{audit.OutcomeOK, audit.OutcomeDenied, audit.OutcomeRejected, audit.OutcomeError}, l.Outcome) {
		t.Errorf("leaf outcome %q", l.Outcome)
	}
	if l.Code != "" && !slices.Contains([]string{custos.ECONFLICT, custos.EFORBIDDEN, custos.EINTERNAL, custos.EINVALID, custos.ENOTFOUND,
		custos.ETOOMANY, custos.ETOOLARGE, custos.EUNAUTHORIZED, custos.EUNAVAILABLE, custos.EUNSUPPORTED}, l.Code) {
		t.Errorf("leaf code %q", l.Code)
	}
	for name, text := range map[string]string{"reason": l.Reason, "detail": l.Detail, "severity": l.Severity} {
		// A keyset's digest ("keyset sha256:<hex>", list.create and the
		// data-key rotation's entries) is computed by the program.
		for _, w := range wordSplit.Split(digest.ReplaceAllString(text, "sha256"), -1) {
			if w != "" && !vocab[w] && !number.MatchString(w) && !anyID(w) {
				t.Errorf("leaf %s %q holds %q, which is no identifier, number or word of the program: %+v", name, text, w, l)
			}
		}
	}
}

// callerEnv is a server with a tenant, the routes to drive and what a
// leaf may hold.
type callerEnv struct {
	e       *env
	f       tenantFixture
	routes  []server.Route
	vocab   map[string]bool
	actions map[string]bool
}

func newCallerEnv(t testing.TB) *callerEnv {
	e := newEnvWith(t, func(c *server.Config) { c.SourceRate, c.SourceBurst = 1e6, 1e6 }) // reach every route, not the limiter
	c := &callerEnv{e: e, f: e.newTenant("Acme"), vocab: vocabulary(t), actions: map[string]bool{string(custos.ActionAuthenticate): true}}
	c.routes = server.New(server.Config{Vault: e.vault, Log: e.log}).Routes()
	for _, r := range c.routes {
		c.actions[string(r.Action)] = true
	}
	return c
}

// drive sends seg as every path wildcard, q as every query value and body
// as the body of every route, with each kind of key, and checks every leaf
// they added.
func (c *callerEnv) drive(t *testing.T, seg, q string, body []byte, ctype byte) {
	e := c.e
	ctx := context.Background()
	if err := e.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := e.log.Size()
	ctypes := []string{"application/json", "text/csv", "application/x-ndjson", "text/plain"}
	query := "?" + url.Values{"limit": {q}, "after": {q}, "status": {q}, "format": {q}, "principal": {q}, "index": {q}, "size": {q},
		"first": {q}, "second": {q}, "n": {q}}.Encode()
	for _, rt := range c.routes {
		// As the tenant's admin on its own tenant (deepest reach), as the
		// operator on the caller's tenant id, and with no key at all.
		for _, as := range []struct{ key, tenant string }{{c.f.admin, c.f.tenant}, {e.operator, seg}, {"", c.f.tenant}} {
			path := rt.Pattern
			for _, w := range []string{"{tenant}", "{list}", "{token}", "{id}", "{index}", "{path...}"} {
				v := seg
				if w == "{tenant}" {
					v = as.tenant
				}
				path = strings.ReplaceAll(path, w, url.PathEscape(v))
			}
			req, err := http.NewRequest(rt.Method, e.srv.URL+path+query, bytes.NewReader(body))
			if err != nil {
				continue
			}
			if as.key != "" {
				req.Header.Set("Authorization", "Bearer "+as.key)
			}
			req.Header.Set("Content-Type", ctypes[int(ctype)%len(ctypes)])
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", rt.Method, rt.Pattern, err)
			}
			resp.Body.Close()
		}
	}
	if err := e.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for from := before; from < e.log.Size(); {
		ss, err := e.log.Entries(ctx, from, 256)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			var l audit.Leaf
			if err := json.Unmarshal(s.Data, &l); err != nil {
				t.Fatalf("entry %d: %v", s.Index, err)
			}
			if l.Actor == "detector" {
				continue // the detector's own alerts on this burst of refusals: rule text, no caller bytes
			}
			checkLeaf(t, l, c.vocab, c.actions)
		}
		from += uint64(len(ss))
	}
}

var callerSeeds = []struct {
	seg, q, body string
}{
	{"Person.Victim@Example-Mail.test", "Person.Victim@Example-Mail.test", `{"email":"Person.Victim@Example-Mail.test","name":"x","kind":"Person.Victim@Example-Mail.test","scopes":["Person.Victim@Example-Mail.test"],"tenant_id":"Person.Victim@Example-Mail.test"}`},
	{strings.Repeat("qzxv", 20000), "qzxv", `{"name":"` + strings.Repeat("qzxv", 1000) + `"}`},
	{"ls_%27%3b%20drop", "-1", `{"reason":"qzxvkw","reason_code":"qzxvkw","ticket":"qzxvkw","duration":"qzxvkw","expires_in":"qzxvkw","key_ids":["qzxvkw"]}`},
	{"tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", "99999999999999999999", "qzxvkw,email\nqzxvkw,qzxvkw\n"},
	{"..", "", `{"attributes":{"qzxvkw":[1]},"consent":"qzxvkw"}`},
	{"\x00\xff\u2028", "\x00\xff", "{\"email\":\"\x00\"}"},
	{"qzxvkw", "qzxvkw", "qzxvkw,qzxvkw\n"},
}

// TestCallerBytesNeverInLeaves drives the seeds (addresses, huge strings,
// injection, unknown enum values, map keys in bodies, control bytes)
// through every route; FuzzCallerBytesNeverInLeaves does the same with
// whatever the fuzzer makes of them.
func TestCallerBytesNeverInLeaves(t *testing.T) {
	c := newCallerEnv(t)
	c.e.email() // registers the seeds' address shape for env's personal-data check
	for i, s := range callerSeeds {
		c.drive(t, s.seg, s.q, []byte(s.body), byte(i))
	}
	// A key creation for the caller's own principal whose scope holds an
	// address (refused, and the refusal once named the scope).
	var ps struct{ Items []custos.Principal }
	json.Unmarshal(c.e.get(c.e.operator, "/v1/principals", 200), &ps)
	for _, p := range ps.Items {
		if p.Kind == custos.KindTenantAdmin && p.TenantID == c.f.tenant {
			c.drive(t, p.ID, "", []byte(`{"scopes":["Person.Victim@Example-Mail.test"]}`), 0)
		}
	}
}

func FuzzCallerBytesNeverInLeaves(f *testing.F) {
	for i, s := range callerSeeds {
		f.Add(s.seg, s.q, []byte(s.body), byte(i))
	}
	c := newCallerEnv(f) // one server for every input
	f.Fuzz(func(t *testing.T, seg, q string, body []byte, ctype byte) {
		c.drive(t, seg, q, body, ctype)
	})
}

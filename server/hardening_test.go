package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/server"
)

// Issue 13, finding 2: bounded abuse.

// leafCount returns the size of the log once everything is integrated.
func (e *env) leafCount() uint64 {
	e.t.Helper()
	e.sync()
	return e.log.Size()
}

// leavesFrom returns the bodies of the entries from index from on, read
// through the log (checked against their commitments and the tree).
func (e *env) leavesFrom(from uint64) []audit.Leaf {
	e.t.Helper()
	e.sync()
	var out []audit.Leaf
	for from < e.log.Size() {
		ss, err := e.log.Entries(context.Background(), from, 256)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, s := range ss {
			var l audit.Leaf
			if err := json.Unmarshal(s.Data, &l); err != nil {
				e.t.Fatalf("entry %d: %v", s.Index, err)
			}
			out = append(out, l)
		}
		from += uint64(len(ss))
	}
	return out
}

func TestUnauthenticatedFloodBounded(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	path := e.srv.URL + "/v1/tenants/" + f.tenant + "/lists/" + f.list + "/contacts"
	before := e.leafCount()

	const n = 10000
	var statuses sync.Map
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for sent.Add(1) <= n {
				req, _ := http.NewRequest("GET", path, nil)
				if sent.Load()%2 == 0 { // half with no key, half with an unknown one
					req.Header.Set("Authorization", "Bearer "+custos.NewAPIKeySecret())
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				c, _ := statuses.LoadOrStore(resp.StatusCode, new(atomic.Int64))
				c.(*atomic.Int64).Add(1)
				if resp.StatusCode == http.StatusTooManyRequests {
					if resp.Header.Get("Retry-After") == "" {
						t.Errorf("429 without Retry-After")
					}
					var body struct{ Error struct{ Code string } }
					if json.Unmarshal(b, &body); body.Error.Code != custos.ETOOMANY {
						t.Errorf("429 code %q, want %q", body.Error.Code, custos.ETOOMANY)
					}
				}
			}
		})
	}
	wg.Wait()
	limited, _ := statuses.Load(http.StatusTooManyRequests)
	if limited == nil || limited.(*atomic.Int64).Load() == 0 {
		t.Errorf("no request of the flood was rate limited")
	}
	// Closing the server records the window still being counted.
	e.api.Close()
	added := e.leavesFrom(before)
	if len(added) > 5 {
		t.Fatalf("a flood of %d unauthenticated requests added %d leaves, want at most 5", n, len(added))
	}
	total := 0
	for _, l := range added {
		total += max(l.Count, 1)
		if l.Action != string(custos.ActionAuthenticate) || l.Outcome != audit.OutcomeDenied {
			t.Errorf("flood leaf %+v: want a denied authenticate", l)
		}
	}
	if total != n {
		t.Errorf("flood leaves account for %d requests, want %d", total, n)
	}
	// An authenticated client is still served from another key's budget.
	e.get(f.admin, "/v1/tenants/"+f.tenant, 200)
}

// TestIdleConnectionsDoNotStarveClients opens many connections that never
// send a request, then has an authenticated client ask for something.
// The process's file limit is set just above what the idle connections
// need on the client side plus the server's connection cap, so a server
// that accepts every idle connection runs out of descriptors and cannot
// serve the client. CUSTOS_SLOW=1 runs it with 20 000 connections, or as
// many as the process's hard file limit allows (at least 10 000: below
// that the slow run fails rather than skip, so CI cannot pass it unrun).
func TestIdleConnectionsDoNotStarveClients(t *testing.T) {
	idle, maxConns := 2000, 256
	slow := os.Getenv("CUSTOS_SLOW") != ""
	if slow {
		idle, maxConns = 20000, 1024
	}
	const spare = 256 // the database, the log, the test's own
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	switch fit := int(min(lim.Max, 1<<20)) - maxConns - spare; {
	case fit >= idle:
	case slow && fit >= 10000:
		idle = fit // this machine's hard limit (CI's is 20 000)
	case slow:
		t.Fatalf("RLIMIT_NOFILE hard limit %d leaves room for %d idle connections: the slow run needs 10 000", lim.Max, fit)
	default:
		t.Skipf("RLIMIT_NOFILE hard limit %d leaves room for %d idle connections, want %d", lim.Max, fit, idle)
	}
	t.Logf("%d idle connections, the server's cap %d", idle, maxConns)
	want := uint64(idle + maxConns + spare)
	e := newEnvWith(t, func(c *server.Config) { c.MaxConns = maxConns })
	f := e.newTenant("Acme")
	saved := lim
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)

	addr := strings.TrimPrefix(e.srv.URL, "http://")
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial idle connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/tenants/"+f.tenant, nil)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("authenticated client behind %d idle connections: %v", idle, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("authenticated client behind %d idle connections: status %d", idle, resp.StatusCode)
	}
}

// TestSlowBodyTimesOut sends an import whose body stops after a few rows
// and never ends: the server must answer instead of waiting forever.
func TestSlowBodyTimesOut(t *testing.T) {
	e := newEnvWith(t, func(c *server.Config) { c.BodyReadTimeout = 200 * time.Millisecond })
	f := e.newTenant("Acme")
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		fmt.Fprintf(pw, "email\n%s\n", e.email())
		// and then nothing, for longer than any deadline
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v1/tenants/"+f.tenant+"/lists/"+f.list+"/import", pr)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("stalled import: %v (the server never answered)", err)
	}
	defer resp.Body.Close()
	var res custos.ImportResult
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &res)
	switch resp.StatusCode {
	case 400:
		// The deadline passed before the header line arrived (a loaded
		// machine): refused before the import began.
	case 200:
		// net/http cancels the request's context when the body's read
		// fails; the row read before the stall must still commit, and the
		// result must name the stall, not the cancellation.
		if !res.Aborted || res.AbortCode != custos.EINVALID {
			t.Errorf("stalled import: aborted %v with code %q (%s), want aborted with %q", res.Aborted, res.AbortCode, res.AbortReason, custos.EINVALID)
		}
		if res.Imported != 1 || res.CommittedThroughLine != 2 {
			t.Errorf("stalled import: imported %d through line %d, want the row read before the stall (1, line 2)", res.Imported, res.CommittedThroughLine)
		}
	default:
		t.Fatalf("stalled import: status %d, body %s", resp.StatusCode, b)
	}
}

func TestAllInvalidImportLeavesLeaf(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	path := "/v1/tenants/" + f.tenant + "/lists/" + f.list + "/import"
	for _, body := range []string{"email\nnot-an-address\nalso not\n", "email\n", "\n"} {
		before := e.leafCount()
		status, _ := e.send(f.admin, "POST", path, "text/csv", strings.NewReader(body))
		added := e.leavesFrom(before)
		if len(added) != 1 {
			t.Errorf("import %q (status %d) left %d leaves, want 1", body, status, len(added))
			continue
		}
		if l := added[0]; l.Action != string(custos.ActionContactImport) || l.Tenant != f.tenant || l.Count != 0 {
			t.Errorf("import %q: leaf %+v", body, l)
		}
	}
}

// TestEveryListRoutePaginated asks every GET route that answers a list of
// items for pages of one item and walks them.
func TestEveryListRoutePaginated(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	e.newTenant("Beta")
	e.postJSON(f.admin, "/v1/tenants/"+f.tenant+"/lists", map[string]string{"name": "second"}, 201)
	for range 3 {
		e.postJSON(f.admin, "/v1/tenants/"+f.tenant+"/lists/"+f.list+"/contacts", map[string]string{"email": e.email()}, 201)
	}
	security := e.newKey(custos.KindStaffSecurity, "", nil)
	keyFor := map[string]string{"": e.operator}
	for _, rt := range server.New(server.Config{Vault: e.vault, Log: e.log}).Routes() {
		if rt.Method != "GET" {
			continue
		}
		path := strings.NewReplacer("{tenant}", f.tenant, "{list}", f.list).Replace(rt.Pattern)
		if strings.Contains(path, "{") || !rt.Auth {
			continue // one item, or not a list
		}
		key := keyFor[""]
		if strings.Contains(path, "/tenants/") {
			key = f.admin
		}
		if path == "/v1/alerts" || path == "/v1/containments" {
			key = security
		}
		status, b := e.send(key, "GET", path, "", nil)
		if status != 200 {
			continue // not this key's to read; the matrix tests cover who may
		}
		var whole map[string]json.RawMessage
		if json.Unmarshal(b, &whole) != nil {
			continue // CSV (export)
		}
		field := ""
		for _, k := range []string{"items", "principals", "entries"} {
			if _, ok := whole[k]; ok {
				field = k
			}
		}
		if field == "" {
			continue // not a list
		}
		var all []json.RawMessage
		json.Unmarshal(whole[field], &all)
		t.Run(rt.Pattern, func(t *testing.T) {
			if len(all) < 2 {
				t.Skipf("%d items: nothing to page", len(all))
			}
			seen := 0
			after := ""
			for range len(all) + 1 {
				q := "?limit=1"
				if after != "" {
					q += "&after=" + after
				}
				b := e.get(key, path+q, 200)
				var pg map[string]json.RawMessage
				json.Unmarshal(b, &pg)
				var items []json.RawMessage
				json.Unmarshal(pg[field], &items)
				if len(items) > 1 {
					t.Fatalf("limit=1 answered %d items", len(items))
				}
				seen += len(items)
				if field == "entries" { // the access log pages by tenant sequence (server/log.go)
					var more bool
					json.Unmarshal(pg["more"], &more)
					if !more {
						t.Errorf("first page of one entry of %d does not say there are more", len(all))
					}
					return
				}
				var next string
				json.Unmarshal(pg["next"], &next)
				if next == "" {
					break
				}
				after = next
			}
			if seen != len(all) {
				t.Errorf("pages held %d items, the whole list %d", seen, len(all))
			}
		})
	}
}

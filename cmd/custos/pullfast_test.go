package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// TestAuditPullRefusesTamperedLaterPage: pages in the server's own shape
// (the ones client.DecodeAccessFeed reads without encoding/json), the
// second one fetched while the first is checked. A body changed in the
// second page, or its first entry left out, is refused; the trusted state
// keeps the first page, which verified, and no more; an honest pull from
// that state then goes on to the end.
func TestAuditPullRefusesTamperedLaterPage(t *testing.T) {
	s := servedStoppable(t)
	tenant, admin := s.c.tenant("Acme")
	s.c.env["CUSTOS_KEY"] = admin
	ctx := context.Background()
	const n = 1500
	es := make([]audit.Entry, 0, n)
	for j := range n {
		es = append(es, audit.Entry{Leaf: audit.Leaf{Actor: "pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ActorKind: "tenant_admin", KeyID: "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa",
			Source: "127.0.0.1", Action: "contact.read", Tenant: tenant, List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
			Tokens: []string{fmt.Sprintf("ct_%026d", j)}, Outcome: "ok", RequestID: fmt.Sprintf("rq_%026d", j)}})
	}
	if _, err := s.srv.Log.AppendAll(ctx, es); err != nil {
		t.Fatal(err)
	}
	if _, err := s.srv.Log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	backend, _ := url.Parse(s.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(backend)
	mode := "honest"
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after := r.URL.Query().Get("after")
		if !strings.HasSuffix(r.URL.Path, "/access-log") || mode == "honest" || after == "" || after == "0" {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if !bytes.HasPrefix(b, []byte(`{"checkpoint":"`)) || !bytes.Contains(b, []byte(`"proof":[]}`)) {
			t.Errorf("a page not in the server's own shape: %.200s", b)
		}
		switch mode {
		case "body": // one byte of a body, same shape and length
			b = bytes.Replace(b, []byte(`"request_id":"rq_0`), []byte(`"request_id":"rq_1`), 1)
		case "gap": // the page's first entry left out
			i := bytes.Index(b, []byte(`"entries":[`)) + len(`"entries":[`)
			j := bytes.Index(b[i:], []byte(`},{"tenant_seq":`))
			b = append(b[:i:i], b[i+j+2:]...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	defer proxy.Close()
	s.c.env["CUSTOS_SERVER"] = proxy.URL
	args := func(state string) []string {
		return []string{"audit", "pull", "--tenant", tenant, "--log-key", filepath.Join(s.dir, "log.pub"), "--state", state}
	}
	for _, m := range []string{"body", "gap"} {
		mode = m
		state := filepath.Join(t.TempDir(), m+".json")
		out, err := s.c.run(args(state)...)
		if err == nil || !strings.Contains(out+err.Error(), "REFUSED") {
			t.Fatalf("%s: a tampered second page was not refused: %v\n%s", m, err, out)
		}
		b, err := os.ReadFile(state)
		if err != nil {
			t.Fatalf("%s: no state after the first page verified: %v", m, err)
		}
		var st pullState
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		if st.TenantSeq != audit.MaxFeedPage {
			t.Fatalf("%s: trusted state at tenant_seq %d, want %d (the first page, and nothing of the tampered one)", m, st.TenantSeq, audit.MaxFeedPage)
		}
		mode = "honest"
		if out, err := pullUntil(s.c, args(state)[2:], n); err != nil {
			t.Fatalf("%s: honest pull from the kept state refused: %v\n%s", m, err, out)
		}
	}
}

package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
)

// fixture is a running custos with a tenant, its admin, and helpers to
// make principals through the API.
type fixture struct {
	s        *stack
	ctx      context.Context
	op       *client.Client
	tenant   string
	adminKey string
	admin    *client.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := startStack(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	ctx := context.Background()
	tn, adminKey, err := s.newTenant(ctx, "Acme", "admin@acme.test")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{s: s, ctx: ctx, op: client.New(s.URL, client.WithKey(s.Operator)), tenant: tn.ID,
		adminKey: adminKey, admin: client.New(s.URL, client.WithKey(adminKey))}
}

// principal creates a principal as the operator, has its enrollment
// approved where it waits (by approvers, in turn), and enrolls it.
func (f *fixture) principal(t *testing.T, kind custos.Kind, tenant, owner string, approvers ...*client.Client) (*custos.Principal, *client.Client) {
	t.Helper()
	p, err := f.op.CreatePrincipal(f.ctx, custos.CreatePrincipalRequest{Kind: kind, TenantID: tenant, Name: string(kind), Owner: owner, Email: owner + "@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enrollment.Status == custos.EnrollPending {
		var errs []error
		for _, a := range append(approvers, f.admin, f.op) {
			_, err := a.ApproveEnrollment(f.ctx, p.Enrollment.ID)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, err)
		}
		if errs != nil {
			t.Fatalf("nobody approved enrollment %s: %v", p.Enrollment.ID, errs)
		}
	}
	key, err := f.s.enroll(f.ctx, p.Enrollment)
	if err != nil {
		t.Fatal(err)
	}
	return p.Principal, client.New(f.s.URL, client.WithKey(key))
}

func collect[T any](t *testing.T, seq func(yield func(T, error) bool)) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestTenantsListsContacts(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	got, err := f.op.Tenant(ctx, f.tenant)
	if err != nil || got.Name != "Acme" {
		t.Fatalf("Tenant = %+v, %v", got, err)
	}
	if ts := collect(t, f.op.Tenants(ctx)); len(ts) != 1 || ts[0].ID != f.tenant {
		t.Fatalf("Tenants = %v", ts)
	}
	l, err := f.admin.CreateList(ctx, f.tenant, "newsletter")
	if err != nil {
		t.Fatal(err)
	}
	if l2, err := f.admin.List(ctx, f.tenant, l.ID); err != nil || l2.Name != "newsletter" {
		t.Fatalf("List = %+v, %v", l2, err)
	}
	c, err := f.admin.CreateContact(ctx, f.tenant, l.ID, custos.CreateContactRequest{Email: "ada@example.test", Attributes: []byte(`{"first_name":"Ada"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if back, err := f.admin.Contact(ctx, f.tenant, c.Token); err != nil || back.Email != "ada@example.test" {
		t.Fatalf("Contact = %+v, %v", back, err)
	}
	sub := custos.ConsentSubscribed
	up, err := f.admin.UpdateContact(ctx, f.tenant, c.Token, custos.ContactUpdate{Consent: &sub})
	if err != nil || up.Consent != sub {
		t.Fatalf("UpdateContact = %+v, %v", up, err)
	}
	if found, err := f.admin.Lookup(ctx, f.tenant, l.ID, "ada@EXAMPLE.test"); err != nil || found.Token != c.Token {
		t.Fatalf("Lookup = %+v, %v", found, err)
	}

	res, err := f.admin.Import(ctx, f.tenant, l.ID, custos.FormatCSV, strings.NewReader("email,consent\ngrace@example.test,subscribed\nnot-an-address,subscribed\nedsger@example.test,unknown\n"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != 2 || res.Failed != 1 || len(res.Errors) != 1 || res.Errors[0].Line != 3 {
		t.Fatalf("Import = %+v", res)
	}
	if toks := collect(t, f.admin.Tokens(ctx, f.tenant, l.ID)); len(toks) != 3 {
		t.Fatalf("Tokens: %d, want 3", len(toks))
	}
	var out bytes.Buffer
	n, err := f.admin.Export(ctx, f.tenant, l.ID, custos.FormatNDJSON, &out)
	if err != nil || n != int64(out.Len()) || strings.Count(out.String(), "\n") != 3 || !strings.Contains(out.String(), "grace@example.test") {
		t.Fatalf("Export = %d, %v:\n%s", n, err, out.String())
	}

	if _, err := f.admin.DeleteContact(ctx, f.tenant, c.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.Contact(ctx, f.tenant, c.Token); custos.ErrorCode(err) != custos.EGONE {
		t.Fatalf("deleted contact: %v, want gone", err)
	}
	if _, err := f.admin.DeleteList(ctx, f.tenant, l.ID); err != nil {
		t.Fatal(err)
	}
	if ls := collect(t, f.admin.Lists(ctx, f.tenant)); len(ls) != 0 {
		t.Fatalf("Lists after delete = %v", ls)
	}
}

func TestPrincipalsKeysEnrollments(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	p, editor := f.principal(t, custos.KindTenantEditor, f.tenant, "ed")
	if got, err := f.op.Principal(ctx, p.ID); err != nil || got.Kind != custos.KindTenantEditor {
		t.Fatalf("Principal = %+v, %v", got, err)
	}
	if ps := collect(t, f.op.Principals(ctx)); len(ps) != 3 { // operator, admin, editor
		t.Fatalf("Principals: %d, want 3", len(ps))
	}
	ks := collect(t, f.op.Keys(ctx, p.ID))
	if len(ks) != 1 || ks[0].PrincipalID != p.ID {
		t.Fatalf("Keys(%s) = %v", p.ID, ks)
	}
	if es := collect(t, f.op.Enrollments(ctx, "")); len(es) < 2 {
		t.Fatalf("Enrollments: %d, want at least 2", len(es))
	}
	if _, err := editor.ListLists(ctx, f.tenant, client.PageOptions{}); err != nil {
		t.Fatalf("editor lists: %v", err)
	}
	if err := f.op.RevokeKey(ctx, ks[0].ID); err != nil {
		t.Fatal(err)
	}
	_, err := editor.ListLists(ctx, f.tenant, client.PageOptions{})
	if custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("revoked key: %v, want unauthorized", err)
	}
	e, err := f.op.Rekey(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.PrincipalID != p.ID {
		t.Fatalf("Rekey = %+v", e)
	}
}

func TestErrorMapping(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	secret := "cst_" + strings.Repeat("x", 40)
	stranger := client.New(f.s.URL, client.WithKey(secret))
	_, editor := f.principal(t, custos.KindTenantEditor, f.tenant, "ed")
	for _, tc := range []struct {
		name   string
		err    error
		code   string
		status int
	}{
		{"missing tenant", func() error { _, err := f.op.Tenant(ctx, custos.NewID(custos.PrefixTenant)); return err }(), custos.ENOTFOUND, 404},
		{"garbage id", func() error { _, err := f.op.Principal(ctx, "../../etc"); return err }(), custos.ENOTFOUND, 404},
		{"editor exports", func() error {
			_, err := editor.Export(ctx, f.tenant, custos.NewID(custos.PrefixList), "", &bytes.Buffer{})
			return err
		}(), custos.EFORBIDDEN, 403},
		{"bad key", func() error { _, err := stranger.ListTenants(ctx, client.PageOptions{}); return err }(), custos.EUNAUTHORIZED, 401},
		{"bad name", func() error { _, err := f.admin.CreateList(ctx, f.tenant, ""); return err }(), custos.EINVALID, 400},
		{"bad duration", func() error {
			_, err := f.admin.SetSupportSettings(ctx, f.tenant, custos.SupportSettingsRequest{MaxGrant: "soon"})
			return err
		}(), custos.EINVALID, 400},
		{"bad format", func() error {
			_, err := f.admin.Import(ctx, f.tenant, custos.NewID(custos.PrefixList), "xlsx", nil)
			return err
		}(), custos.EINVALID, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := custos.ErrorCode(tc.err); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, tc.err, tc.code)
			}
			if _, ok := errors.AsType[*custos.Error](tc.err); !ok {
				t.Errorf("%v is not a *custos.Error", tc.err)
			}
			if strings.Contains(tc.err.Error(), secret) {
				t.Errorf("the key appears in %q", tc.err)
			}
			if tc.status == 0 {
				return // refused before any request
			}
			ce, ok := errors.AsType[*client.Error](tc.err)
			if !ok {
				t.Fatalf("%v is not a *client.Error", tc.err)
			}
			if ce.Status != tc.status || !custos.ValidID(custos.PrefixRequest, ce.RequestID) {
				t.Errorf("status %d request %q, want %d and a request id", ce.Status, ce.RequestID, tc.status)
			}
		})
	}
}

func TestPagination(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	var created []*custos.List
	for i := range 5 {
		l, err := f.admin.CreateList(ctx, f.tenant, fmt.Sprintf("list %d", i))
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, l)
	}
	// Lists come in creation order, ties within a millisecond by ID: two
	// lists made in the same millisecond are not in the order they were made.
	slices.SortStableFunc(created, func(a, b *custos.List) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var want []string
	for _, l := range created {
		want = append(want, l.ID)
	}
	pg, err := f.admin.ListLists(ctx, f.tenant, client.PageOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Items) != 2 || pg.Next != want[1] {
		t.Fatalf("first page: %d items, next %q; want 2 and %q", len(pg.Items), pg.Next, want[1])
	}
	paged := client.New(f.s.URL, client.WithKey(f.adminKey), client.WithPageLimit(2))
	var got []string
	for l, err := range paged.Lists(ctx, f.tenant) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l.ID)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Lists over pages of 2 (-want +got):\n%s", diff)
	}
	// Stopping early stops asking.
	for range paged.Lists(ctx, f.tenant) {
		break
	}

	// Contacts page by token with their own cursor.
	l := want[0]
	for i := range 5 {
		if _, err := f.admin.CreateContact(ctx, f.tenant, l, custos.CreateContactRequest{Email: fmt.Sprintf("p%d@example.test", i)}); err != nil {
			t.Fatal(err)
		}
	}
	cs := collect(t, paged.Contacts(ctx, f.tenant, l))
	seen := map[string]bool{}
	for _, c := range cs {
		seen[c.Email] = true
	}
	if len(cs) != 5 || len(seen) != 5 {
		t.Fatalf("Contacts over pages of 2: %d (%d distinct), want 5", len(cs), len(seen))
	}
	// An error ends the iteration with the error.
	n := 0
	for _, err := range paged.Lists(ctx, custos.NewID(custos.PrefixTenant)) {
		n++
		if custos.ErrorCode(err) != custos.ENOTFOUND && custos.ErrorCode(err) != custos.EFORBIDDEN {
			t.Fatalf("other tenant's lists: %v", err)
		}
	}
	if n != 1 {
		t.Fatalf("error yielded %d times, want once", n)
	}
}

// TestRetries: an idempotent request is retried on 503 and 429 until it
// succeeds, within the bound; a POST is sent once whatever the answer.
func TestRetries(t *testing.T) {
	var hits atomic.Int32
	fail := atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		if n <= fail.Load() {
			w.Header().Set("Retry-After", "0")
			status := http.StatusServiceUnavailable
			if n%2 == 0 {
				status = http.StatusTooManyRequests
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"code":%q,"message":"try later"},"request_id":"rq_x"}`, map[int]string{503: custos.EUNAVAILABLE, 429: custos.ETOOMANY}[status])
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"tn_x","name":"Acme"}`)
	}))
	defer srv.Close()
	c := client.New(srv.URL, client.WithKey("cst_k"), client.WithRetries(3, time.Millisecond))
	ctx := context.Background()

	fail.Store(2)
	tn, err := c.Tenant(ctx, "tn_x")
	if err != nil || tn.Name != "Acme" || hits.Load() != 3 {
		t.Fatalf("GET after two failures: %+v, %v after %d requests; want success after 3", tn, err, hits.Load())
	}

	hits.Store(0)
	fail.Store(10)
	_, err = c.Tenant(ctx, "tn_x")
	if custos.ErrorCode(err) != custos.EUNAVAILABLE && custos.ErrorCode(err) != custos.ETOOMANY || hits.Load() != 4 {
		t.Fatalf("GET failing throughout: %v after %d requests; want the error after 4", err, hits.Load())
	}

	hits.Store(0)
	fail.Store(1)
	_, err = c.CreateList(ctx, "tn_x", "newsletter")
	if custos.ErrorCode(err) != custos.EUNAVAILABLE || hits.Load() != 1 {
		t.Fatalf("POST: %v after %d requests; want unavailable after exactly 1", err, hits.Load())
	}
	if ce, ok := errors.AsType[*client.Error](err); !ok || ce.Status != 503 || ce.RequestID != "rq_x" {
		t.Fatalf("POST error %#v", err)
	}

	hits.Store(0)
	fail.Store(1)
	if _, err := c.SetSupportSettings(ctx, "tn_x", custos.SupportSettingsRequest{}); err != nil || hits.Load() != 2 {
		t.Fatalf("PUT: %v after %d requests; want success after 2", err, hits.Load())
	}

	// A refused connection is retried for GET, and the error says what
	// failed without the key.
	srv.Close()
	hits.Store(0)
	_, err = c.Tenant(ctx, "tn_x")
	if err == nil || strings.Contains(err.Error(), "cst_k") || !strings.Contains(err.Error(), "/v1/tenants/tn_x") {
		t.Fatalf("GET to a closed server: %v", err)
	}
}

func TestSecuritySupportLog(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	_, sec := f.principal(t, custos.KindStaffSecurity, "", "sec")
	ed, _ := f.principal(t, custos.KindTenantEditor, f.tenant, "ed")

	// Containment by hand, listed, lifted.
	if s, err := sec.Suspend(ctx, ed.ID, "investigating"); err != nil || !s.Suspended || s.Principal != ed.ID {
		t.Fatalf("Suspend = %+v, %v", s, err)
	}
	if fr, err := sec.Freeze(ctx, f.tenant, "investigating"); err != nil || !fr.Frozen {
		t.Fatalf("Freeze = %+v, %v", fr, err)
	}
	cs := collect(t, sec.Containments(ctx))
	if len(cs) != 2 {
		t.Fatalf("Containments = %d, want 2", len(cs))
	}
	if _, err := sec.Unsuspend(ctx, ed.ID, "cleared"); err != nil {
		t.Fatal(err)
	}
	if _, err := sec.Unfreeze(ctx, f.tenant, "cleared"); err != nil {
		t.Fatal(err)
	}
	if as := collect(t, sec.Alerts(ctx, custos.AlertOpen)); len(as) != 0 {
		t.Fatalf("Alerts = %v, want none", as)
	}
	if tr, err := sec.Trace(ctx, "nobody@example.test"); err != nil || tr.Kind != custos.TraceNone {
		t.Fatalf("Trace = %+v, %v", tr, err)
	}

	// Support settings and an access request, denied.
	st, err := f.admin.SetSupportSettings(ctx, f.tenant, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: "24h"})
	if err != nil || !st.SupportAccess {
		t.Fatalf("SetSupportSettings = %+v, %v", st, err)
	}
	if got, err := f.admin.SupportSettings(ctx, f.tenant); err != nil || !got.SupportAccess {
		t.Fatalf("SupportSettings = %+v, %v", got, err)
	}
	_, support := f.principal(t, custos.KindStaffSupport, "", "sup", sec)
	req, err := support.RequestAccess(ctx, f.tenant, custos.AccessRequestBody{Reason: "customer ticket", Ticket: "T-1", Scope: custos.ScopeViewMasked})
	if err != nil {
		t.Fatal(err)
	}
	if rs := collect(t, f.admin.AccessRequests(ctx, f.tenant)); len(rs) != 1 || rs[0].ID != req.ID {
		t.Fatalf("AccessRequests = %v", rs)
	}
	if err := f.admin.DenyAccessRequest(ctx, f.tenant, req.ID, "not now"); err != nil {
		t.Fatal(err)
	}
	if gs := collect(t, f.admin.Grants(ctx, f.tenant)); len(gs) != 0 {
		t.Fatalf("Grants after a denial = %v", gs)
	}
	if rv, err := f.op.Review(ctx, client.PageOptions{}); err != nil || len(rv.Principals) < 5 {
		t.Fatalf("Review = %v, %v", rv, err)
	}

	// The log: a checkpoint, proofs against it, an entry, the tenant's feed.
	if _, err := f.s.log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := f.op.Checkpoint(ctx)
	if err != nil || !bytes.Contains(cp, []byte("custos.test/log")) {
		t.Fatalf("Checkpoint = %q, %v", cp, err)
	}
	ip, err := f.op.InclusionProof(ctx, 0, 0)
	if err != nil || ip.Size == 0 {
		t.Fatalf("InclusionProof = %+v, %v", ip, err)
	}
	if _, err := f.op.ConsistencyProof(ctx, 1, ip.Size); err != nil {
		t.Fatal(err)
	}
	if e, err := sec.LogEntry(ctx, 0); err != nil || e.Index != 0 || len(e.Leaf) == 0 {
		t.Fatalf("LogEntry = %+v, %v", e, err)
	}
	feed, err := f.admin.AccessLog(ctx, f.tenant, 0, 0)
	if err != nil || len(feed.Entries) == 0 || len(feed.Checkpoint) == 0 {
		t.Fatalf("AccessLog = %+v, %v", feed, err)
	}
	// The same page with one page proof: the same entries, no proof of
	// their own (audit.CheckFeedPage checks the page; cmd/custos's pull
	// tests do, through this method).
	paged, err := f.admin.AccessLogPageProof(ctx, f.tenant, 0, 0)
	if err != nil || len(paged.PageProof) == 0 || !bytes.Equal(paged.Checkpoint, feed.Checkpoint) || len(paged.Entries) != len(feed.Entries) {
		t.Fatalf("AccessLogPageProof = %+v, %v", paged, err)
	}
	for i, e := range paged.Entries {
		w := feed.Entries[i]
		if e.TenantSeq != w.TenantSeq || e.Index != w.Index || !bytes.Equal(e.Body, w.Body) || !bytes.Equal(e.Salt, w.Salt) || len(e.Proof) != 0 {
			t.Fatalf("page-proved entry %d = %+v, want %+v without its proof", i, e, w)
		}
	}
}

// TestKeyInventoryPages: the client's KeyInventory follows the pages of
// GET /v1/keysets to the end; one keyset a page gives the same keysets in
// the same order; the server refuses a cursor that is not one.
func TestKeyInventoryPages(t *testing.T) {
	f := newFixture(t)
	ctx := f.ctx
	for i := range 3 {
		if _, err := f.admin.CreateList(ctx, f.tenant, fmt.Sprintf("list %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, sec := f.principal(t, custos.KindStaffSecurity, "", "sec")
	whole, err := sec.KeyInventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range whole.Keysets {
		want = append(want, e.Kind+"/"+e.ID)
	}
	if len(want) < 5 || whole.Next != "" {
		t.Fatalf("whole inventory: %v, next %q", want, whole.Next)
	}
	var got []string
	for o := (client.PageOptions{Limit: 1}); ; {
		inv, err := sec.KeyInventoryPage(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range inv.Keysets {
			got = append(got, e.Kind+"/"+e.ID)
		}
		if inv.Next == "" {
			break
		}
		o.After = inv.Next
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("one a page: %v, want %v", got, want)
	}
	if _, err := sec.KeyInventoryPage(ctx, client.PageOptions{After: "nonsense"}); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("a bad cursor: %v", err)
	}
}

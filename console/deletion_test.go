package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/receipt"
)

// TestDeletionPage: a list deleted through the API leaves a receipt the
// deletion page lists and downloads as a file receipt.Verify accepts with
// the log's key (as custos verify-receipt would); scheduling the tenant's
// deletion needs a step-up, and once scheduled any other admin cancels it
// from the page (each checked through the API); another tenant's admin
// gets neither the page nor the receipt.
func TestDeletionPage(t *testing.T) {
	e := newEnv(t, node.Options{})
	ctx := context.Background()
	tenant, admin := e.newTenant("Leaving")
	second, _ := e.principal(custos.KindTenantAdmin, tenant, "bea")
	_, other := e.newTenant("Staying")
	l, err := e.api(admin).CreateList(ctx, tenant, "old-campaign")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.api(admin).DeleteList(ctx, tenant, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	path := "/ui/t/" + tenant + "/deletion"

	b := e.browser()
	b.signIn(admin)
	waitFor(t, "the receipt's file", func() bool {
		_, body, _ := b.get(path)
		return strings.Contains(body, "/receipts/"+rc.ID)
	})
	res, err := b.hc.Get(e.url + "/ui/t/" + tenant + "/receipts/" + rc.ID)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %d %v", res.StatusCode, res.Header)
	}
	st, _, err := receipt.Verify(file, e.n.Verifier)
	if err != nil || st.ID != rc.ID || st.List != l.ID {
		t.Fatalf("the downloaded receipt: %+v, %v", st, err)
	}

	// Scheduling needs a step-up for this tenant's deletion.
	_, _, token := b.get(path)
	schedule := url.Values{"csrf": {token}, "grace_days": {"3"}}
	if code, _, _ := b.post(path, schedule, nil); code != http.StatusForbidden {
		t.Fatalf("schedule without a step-up: %d", code)
	}
	pending := func() *custos.Deletion {
		ds, err := e.api(admin).TenantDeletions(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds.Items {
			if d.Status == custos.DeletionScheduled {
				return d
			}
		}
		return nil
	}
	if pending() != nil {
		t.Fatal("a deletion was scheduled without the step-up")
	}
	if code, loc, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionDeletionRequest)}, "tenant": {tenant}, "target": {tenant}, "key": {admin}}, nil); code != http.StatusSeeOther || loc != path {
		t.Fatalf("step-up: %d %q %s", code, loc, body)
	}
	if code, loc, _ := b.post(path, schedule, nil); code != http.StatusSeeOther || loc != path {
		t.Fatalf("schedule after the step-up: %d", code)
	}
	d := pending()
	if d == nil || d.GraceSeconds != 3*24*3600 {
		t.Fatalf("scheduled: %+v", d)
	}

	// Another tenant's admin sees neither the deletion nor the receipt.
	o := e.browser()
	o.signIn(other)
	if code, body, _ := o.get(path); code != http.StatusForbidden || strings.Contains(body, d.ID) || strings.Contains(body, rc.ID) {
		t.Fatalf("another tenant's admin on the page: %d", code)
	}
	if code, body, _ := o.get("/ui/t/" + tenant + "/receipts/" + rc.ID); code != http.StatusForbidden || strings.Contains(body, "custos.dev") {
		t.Fatalf("another tenant's admin downloads the receipt: %d", code)
	}

	// The second admin cancels it.
	sb := e.browser()
	sb.signIn(second)
	code, body, token := sb.get(path)
	if code != 200 || !strings.Contains(body, d.ID) {
		t.Fatalf("the second admin's page: %d", code)
	}
	if code, _, _ := sb.post(path+"/cancel", url.Values{"csrf": {token}}, nil); code != http.StatusSeeOther || pending() != nil {
		t.Fatalf("cancel: %d", code)
	}
}

// TestAccessLogProven: the access log page says its entries are proven
// (the page's proof checked against the checkpoint the log's key signed),
// and the page downloaded from it is the feed page custos audit pull
// reads: it decodes, and its proof checks offline with the log's key.
func TestAccessLogProven(t *testing.T) {
	e := newEnv(t, node.Options{})
	ctx := context.Background()
	tenant, admin := e.newTenant("Audited")
	l, err := e.api(admin).CreateList(ctx, tenant, "weekly")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.api(admin).CreateContact(ctx, tenant, l.ID, custos.CreateContactRequest{Email: "ann@audited.test"}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(admin)
	var body string
	waitFor(t, "the access log's entries under a checkpoint", func() bool {
		_, body, _ = b.get("/ui/t/" + tenant + "/log")
		return strings.Contains(body, "contact.create")
	})
	if !strings.Contains(body, `id="proven"`) || strings.Contains(body, `id="unproven"`) || !strings.Contains(body, `<td class="proof">proven</td>`) {
		t.Fatalf("the access log page does not show its entries proven:\n%s", body)
	}
	res, err := b.hc.Get(e.url + "/ui/t/" + tenant + "/log/page?after=0")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	f, err := client.DecodeAccessFeed(page)
	if res.StatusCode != 200 || err != nil || len(f.Entries) == 0 {
		t.Fatalf("downloaded page: %d, %v", res.StatusCode, err)
	}
	cp, err := audit.ParseCheckpoint(f.Checkpoint, e.n.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	es := make([]audit.FeedEntry, len(f.Entries))
	for i, x := range f.Entries {
		es[i] = audit.FeedEntry{TenantSeq: x.TenantSeq, Index: x.Index, Body: x.Body, Salt: x.Salt}
	}
	if err := audit.CheckFeedPage(cp, es, f.PageProof, tenant, 1); err != nil {
		t.Fatalf("the downloaded page's proof: %v", err)
	}
}

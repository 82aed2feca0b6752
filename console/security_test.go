package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/console"
	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/server"
)

// TestSecurityViews: security staff land on the alerts; an alert the
// detector raised (a tenant admin trying to approve its own key change)
// shows its rule, principals, tenant and evidence entries, and is
// acknowledged then resolved through the page (checked through the API);
// a suspension applied by one security engineer is lifted by another on
// the containments page only after a step-up for that containment; a
// tenant admin reaches none of these pages.
func TestSecurityViews(t *testing.T) {
	e := newEnv(t, node.Options{})
	ctx := context.Background()
	tenant, admin := e.newTenant("Watched")
	ana, _ := e.principal(custos.KindStaffSecurity, "", "ana")
	ben, _ := e.principal(custos.KindStaffSecurity, "", "ben")
	kms := kmstest.New(t)
	ch, err := e.api(admin).SetTenantKey(ctx, tenant, custos.TenantKeyRequest{URI: kms.URI("watched")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.api(admin).ApproveTenantKeyChange(ctx, tenant, ch.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("self-approval: %v", err)
	}
	var alert *custos.Alert
	waitFor(t, "the self-approval alert", func() bool {
		for a, err := range e.api(ana).Alerts(ctx, custos.AlertOpen) {
			if err != nil {
				t.Fatal(err)
			}
			if a.RuleID == "self-approval-attempt" && len(a.Tenants) == 1 && a.Tenants[0] == tenant {
				alert = a
				return true
			}
		}
		return false
	})
	status := func() string {
		for a, err := range e.api(ana).Alerts(ctx, "") {
			if err != nil {
				t.Fatal(err)
			}
			if a.ID == alert.ID {
				return a.Status
			}
		}
		return ""
	}

	b := e.browser()
	b.signIn(ana)
	if code, body, _ := b.get("/ui/"); code != http.StatusSeeOther || !strings.Contains(body, `"/ui/security/alerts"`) {
		t.Fatalf("security's home: %d %q", code, body)
	}
	code, body, token := b.get("/ui/security/alerts")
	if code != 200 || !strings.Contains(body, alert.ID) || !strings.Contains(body, "self-approval-attempt") || !strings.Contains(body, tenant) {
		t.Fatalf("alerts page: %d\n%s", code, body)
	}
	for _, ev := range alert.Evidence {
		if !strings.Contains(body, `<a class="entry" href="/ui/security/entries/`+strconv.FormatUint(ev, 10)+`"><code>`+strconv.FormatUint(ev, 10)+"</code></a>") {
			t.Errorf("evidence entry %d not linked", ev)
		}
	}
	checkEvidence(t, e, b, alert.Evidence, tenant)
	if code, loc, _ := b.post("/ui/security/alerts/"+alert.ID+"/ack", url.Values{"csrf": {token}, "note": {"looking"}}, nil); code != http.StatusSeeOther || loc != "/ui/security/alerts" {
		t.Fatalf("acknowledge: %d", code)
	}
	if s := status(); s != custos.AlertAcknowledged {
		t.Fatalf("after acknowledging: %s", s)
	}
	if code, _, _ := b.post("/ui/security/alerts/"+alert.ID+"/resolve", url.Values{"csrf": {token}, "note": {"the admin asked a colleague"}}, nil); code != http.StatusSeeOther {
		t.Fatalf("resolve: %d", code)
	}
	if s := status(); s != custos.AlertResolved {
		t.Fatalf("after resolving: %s", s)
	}
	if _, body, _ := b.get("/ui/security/alerts"); strings.Contains(body, alert.ID) {
		t.Error("a resolved alert among the open ones")
	}
	if _, body, _ := b.get("/ui/security/alerts?status=resolved"); !strings.Contains(body, alert.ID) {
		t.Error("the resolved alert is not among the resolved ones")
	}

	// Ana suspends a support engineer; Ben lifts it, after a step-up.
	samKey, sam := e.principal(custos.KindStaffSupport, "", "sam")
	if _, err := e.api(ana).Suspend(ctx, sam.ID, "odd hours"); err != nil {
		t.Fatal(err)
	}
	contained := func() bool {
		for c, err := range e.api(ana).Containments(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if c.Target == sam.ID {
				return true
			}
		}
		return false
	}
	bb := e.browser()
	bb.signIn(ben)
	code, body, token = bb.get("/ui/security/containments")
	if code != 200 || !strings.Contains(body, sam.ID) {
		t.Fatalf("containments page: %d\n%s", code, body)
	}
	lift := url.Values{"csrf": {token}, "kind": {custos.ContainmentSuspension}, "target": {sam.ID}, "reason": {"cleared with the manager"}}
	if code, _, body := bb.post("/ui/security/containments/lift", lift, nil); code != http.StatusForbidden || !strings.Contains(body, `name="target" value="`+sam.ID+`"`) || !contained() {
		t.Fatalf("lift without a step-up: %d", code)
	}
	if code, loc, body := bb.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionLift)}, "target": {sam.ID}, "key": {ben}}, nil); code != http.StatusSeeOther || loc != "/ui/security/containments" {
		t.Fatalf("step-up: %d %q %s", code, loc, body)
	}
	if code, _, _ := bb.post("/ui/security/containments/lift", lift, nil); code != http.StatusSeeOther || contained() {
		t.Fatalf("lift after the step-up: %d, still contained %v", code, contained())
	}

	// The key inventory: the tenant's keyset, what wraps it, no URI.
	code, body, _ = bb.get("/ui/security/keys")
	if code != 200 || !strings.Contains(body, `id="keyset-tenant-`+tenant+`"`) || !strings.Contains(body, `id="kek"`) {
		t.Fatalf("key inventory: %d\n%s", code, body)
	}
	for _, secret := range []string{"local://", kms.URI("watched"), "test-kms://"} {
		if strings.Contains(body, secret) {
			t.Errorf("the key inventory shows %q", secret)
		}
	}

	// The log's health: its size and checkpoint, its own checks holding,
	// and that no witness countersigns it here.
	code, body, _ = bb.get("/ui/log")
	if code != 200 || !strings.Contains(body, `id="no-witnesses"`) || !strings.Contains(body, `<dd id="log-integrity">hold</dd>`) || strings.Contains(body, `<dd id="log-size">0</dd>`) {
		t.Fatalf("log health: %d\n%s", code, body)
	}

	// The access review lists Sam with his live key; security reads it,
	// an operator revokes the key there and it ends (his next request is
	// refused).
	code, body, secToken := bb.get("/ui/security/review")
	if code != 200 || !strings.Contains(body, `id="principal-`+sam.ID+`"`) || strings.Contains(body, `name="key"`) {
		t.Fatalf("access review for security: %d\n%s", code, body)
	}
	ob := e.browser()
	ob.signIn(e.operator)
	code, body, token = ob.get("/ui/security/review")
	row := body[max(strings.Index(body, `id="principal-`+sam.ID+`"`), 0):]
	m := regexp.MustCompile(`name="key" value="(ak_[a-z2-7]{26})"`).FindStringSubmatch(row)
	if code != 200 || m == nil {
		t.Fatalf("access review for the operator: %d\n%s", code, body)
	}
	if code, _, _ := bb.post("/ui/security/review/revoke", url.Values{"csrf": {secToken}, "key": {m[1]}}, nil); code != http.StatusForbidden {
		t.Fatalf("security revokes from the review: %d", code)
	}
	waitFor(t, "the refused revocation's entry", func() bool { return refused(t, e, 0, custos.ActionReviewRevoke, "") })
	if code, _, _ := ob.post("/ui/security/review/revoke", url.Values{"csrf": {token}, "key": {m[1]}}, nil); code != http.StatusSeeOther {
		t.Fatalf("revoke from the review: %d", code)
	}
	if _, err := e.api(samKey).Tenant(ctx, tenant); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("the revoked key still works: %v", err)
	}

	// The blast radius of the admin who tried to approve itself: its
	// tenant, and the report and the tenant's part downloaded verify
	// offline with the log's key.
	who := alert.Principals[0]
	// (A report covers what a signed checkpoint covers: the checkpoint
	// cadence may leave the last entries out for under a second.)
	waitFor(t, "the blast radius page naming the tenant", func() bool {
		code, body, _ = bb.get("/ui/security/blast?principal=" + who)
		if code != 200 {
			t.Fatalf("blast radius page: %d\n%s", code, body)
		}
		return strings.Contains(body, `id="blast-`+tenant+`"`)
	})
	if !strings.Contains(body, `href="/ui/security/blast/report?principal=`+who+`"`) {
		t.Fatalf("no download link:\n%s", body)
	}
	download := func(q string) []byte {
		t.Helper()
		res, err := bb.hc.Get(e.url + "/ui/security/blast/report?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("download %s: %d %s", q, res.StatusCode, b)
		}
		return b
	}
	if rep, _, err := blastreport.Verify(download("principal="+who), e.n.Verifier); err != nil || !rep.Completeness.Complete || len(rep.Entries) == 0 {
		t.Fatalf("the downloaded report: %v", err)
	}
	if part, _, err := blastreport.Verify(download("principal="+who+"&part="+tenant), e.n.Verifier); err != nil || part.Part == nil || part.Part.Tenant != tenant {
		t.Fatalf("the tenant's part: %+v, %v", part, err)
	}

	// A tenant admin reaches none of it.
	tb := e.browser()
	tb.signIn(admin)
	for _, p := range []string{"/ui/security/alerts", "/ui/security/containments", "/ui/security/keys", "/ui/security/review", "/ui/security/blast?principal=" + who, "/ui/security/blast/report?principal=" + who} {
		if code, body, _ := tb.get(p); code != http.StatusForbidden || strings.Contains(body, alert.ID) || strings.Contains(body, sam.ID) {
			t.Errorf("a tenant admin on %s: %d", p, code)
		}
	}
}

// checkEvidence follows each evidence link of an alert: the entry page
// shows the entry proven (naming its tenant), and its proof, downloaded,
// verifies offline under the log's key (audit.Proof.Verify, what custos
// verify-proof runs) and opens to the same entry. Each view is recorded.
func checkEvidence(t *testing.T, e *env, b *browser, evidence []uint64, tenant string) {
	t.Helper()
	if len(evidence) == 0 {
		t.Fatal("the alert names no evidence")
	}
	from := e.n.Log.Size()
	for _, ev := range evidence {
		i := strconv.FormatUint(ev, 10)
		var code int
		var page string
		waitFor(t, "a checkpoint covering entry "+i, func() bool { // signed once a second while the log grows
			code, page, _ = b.get("/ui/security/entries/" + i)
			return !strings.Contains(page, `id="entry-uncovered"`)
		})
		if code != http.StatusOK || !strings.Contains(page, `id="entry-proven"`) || !strings.Contains(page, "<code>"+tenant+"</code>") {
			t.Fatalf("evidence entry %d: %d\n%s", ev, code, page)
		}
		res, err := b.hc.Get(e.url + "/ui/security/entries/" + i + "/proof")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		p, err := audit.ParseProof(raw)
		if err != nil || p.Index != ev {
			t.Fatalf("the downloaded proof of %d: %v (index %v)", ev, err, p)
		}
		cp, err := p.Verify(e.n.Verifier)
		if err != nil || cp.Size <= ev {
			t.Fatalf("the proof of %d does not verify offline: %v", ev, err)
		}
		var l audit.Leaf
		if json.Unmarshal(p.Body(), &l) != nil || l.Tenant != tenant {
			t.Fatalf("the proof of %d opens to %s", ev, p.Body())
		}
	}
	if code, _, _ := b.get("/ui/security/entries/notanumber"); code != http.StatusBadRequest {
		t.Fatalf("an entry that is no index: %d", code)
	}
	recorded(t, e, from, custos.ActionEvidenceEntry, audit.OutcomeOK)
}

// TestEvidenceTampered: an evidence entry whose stored body was changed
// behind custos's back is shown as failing its check (409, with why),
// never as the changed body; its proof is not handed out.
func TestEvidenceTampered(t *testing.T) {
	e := newEnv(t, node.Options{})
	tenant, _ := e.newTenant("Watched")
	ana, _ := e.principal(custos.KindStaffSecurity, "", "ana")
	b := e.browser()
	b.signIn(ana)
	// Entry 1 onwards concern the tenant's creation; find one of it.
	var idx uint64
	for i := range e.n.Log.Size() {
		body, err := e.n.Log.Entry(context.Background(), i)
		if err == nil && strings.Contains(string(body), tenant) {
			idx = i
			break
		}
	}
	i := strconv.FormatUint(idx, 10)
	waitFor(t, "a checkpoint covering entry "+i, func() bool {
		_, page, _ := b.get("/ui/security/entries/" + i)
		return strings.Contains(page, `id="entry-proven"`)
	})
	if _, err := e.n.DB.Write.Exec(`UPDATE audit_leaves SET data = $1 WHERE idx = $2`, []byte(`{"action":"nothing to see","tenant":"`+tenant+`"}`), int64(idx)); err != nil {
		t.Fatal(err)
	}
	code, page, _ := b.get("/ui/security/entries/" + i)
	if code != http.StatusConflict || !strings.Contains(page, `id="entry-failed"`) || strings.Contains(page, "nothing to see") {
		t.Fatalf("a tampered entry: %d\n%s", code, page)
	}
	if code, _, _ := b.get("/ui/security/entries/" + i + "/proof"); code == http.StatusOK {
		t.Fatal("a proof of a tampered entry was handed out")
	}
}

// TestBlastPageRunsInBackground: the blast page does not hold its request
// while the report is computed. With no wait, the first visit answers at
// once with the progress page (reloading itself by a Refresh header, no
// script); later visits find the same run, and the report once it is
// there — computed, authorized and recorded once (one blast_radius.read
// entry for any number of visits while it ran). A tenant admin's visit is
// refused and starts nothing.
func TestBlastPageRunsInBackground(t *testing.T) {
	e := newEnv(t, node.Options{Server: func(c *server.Config) {
		console.SetBlastWait(c.Console.(*console.Console), 0)
	}})
	ctx := context.Background()
	tenant, admin := e.newTenant("Blasted")
	if _, err := e.api(admin).CreateList(ctx, tenant, "subscribers"); err != nil {
		t.Fatal(err)
	}
	ana, anaP := e.principal(custos.KindStaffSecurity, "", "ana")
	var subject string
	for p, err := range e.api(e.operator).Principals(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind == custos.KindTenantAdmin && p.TenantID == tenant {
			subject = p.ID
		}
	}
	b := e.browser()
	b.signIn(ana)
	// A report covers what a signed checkpoint covers: sign one over the
	// admin's entries first, so the first report names the tenant.
	if err := e.n.Log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.n.Log.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	path := "/ui/security/blast?principal=" + subject
	from := e.n.Log.Size()
	res, err := b.hc.Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Refresh") != "1" || !strings.Contains(string(body), `id="blast-running"`) {
		t.Fatalf("the first visit: %d, Refresh %q\n%s", res.StatusCode, res.Header.Get("Refresh"), body)
	}
	visits := 1
	waitFor(t, "the report on the page", func() bool {
		visits++
		code, body, _ := b.get(path)
		if code != 200 {
			t.Fatalf("visit %d: %d", visits, code)
		}
		return strings.Contains(body, `id="blast-`+tenant+`"`)
	})
	reads := func() int {
		t.Helper()
		if err := e.n.Log.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		size := e.n.Log.Size()
		es, err := e.n.Log.Entries(ctx, from, int(size-from))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range es {
			var l audit.Leaf
			if err := json.Unmarshal(s.Data, &l); err != nil {
				t.Fatal(err)
			}
			if l.Action == string(custos.ActionBlastRadius) && l.Actor == anaP.ID {
				n++
			}
		}
		return n
	}
	if n := reads(); n != 1 {
		t.Fatalf("%d visits recorded %d blast-radius reads, want 1", visits, n)
	}
	// Asked again: a new run (and a new entry), not the shown one.
	if _, body, _ := b.get(path); !strings.Contains(body, `id="blast-running"`) {
		t.Fatalf("asked again after the report was shown:\n%s", body)
	}
	waitFor(t, "the second report", func() bool {
		_, body, _ := b.get(path)
		return strings.Contains(body, `id="blast-`+tenant+`"`)
	})
	if n := reads(); n != 2 {
		t.Fatalf("two reports recorded %d reads", n)
	}

	tb := e.browser()
	tb.signIn(admin)
	before := e.n.Log.Size()
	if code, body, _ := tb.get(path); code != http.StatusForbidden || strings.Contains(body, "blast-running") {
		t.Fatalf("a tenant admin on the blast page: %d\n%s", code, body)
	}
	waitFor(t, "the refusal's entry", func() bool { return refused(t, e, before, custos.ActionBlastRadius, "") })
}

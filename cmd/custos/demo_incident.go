package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

// hookReceiver is the demo's webhook endpoint on 127.0.0.1: it keeps what
// it receives, with headers, for the demo to show and verify.
type hookReceiver struct {
	URL    string
	secret string
	srv    *http.Server
	mu     sync.Mutex
	got    []received
}

type received struct {
	header http.Header
	body   []byte
}

func startHookReceiver() (*hookReceiver, error) {
	key := make([]byte, 32)
	rand.Read(key)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hookReceiver{URL: "http://" + ln.Addr().String() + "/hooks/custos", secret: "whsec_" + base64.StdEncoding.EncodeToString(key)}
	h.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		h.mu.Lock()
		h.got = append(h.got, received{r.Header.Clone(), b})
		h.mu.Unlock()
	})}
	go h.srv.Serve(ln)
	return h, nil
}

func (h *hookReceiver) Close() error { return h.srv.Close() }

// wait returns the first received webhook whose body contains s.
func (h *hookReceiver) wait(s string, d time.Duration) (received, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for _, r := range h.got {
			if bytes.Contains(r.body, []byte(s)) {
				h.mu.Unlock()
				return r, true
			}
		}
		h.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return received{}, false
}

// demoRun is what the demo's steps share.
type demoRun struct {
	srv      *node.Node
	keyFor   func(kind custos.Kind, tenant, name string, scopes ...custos.Scope) string
	staff    *client.Client
	staffID  string
	sec      *client.Client // security staff, from the incident on
	hook     *hookReceiver
	dir      string // the demo's data directory
	say      func(string, ...any)
	note     func(string, ...any)
	notified func()
}

// refusal notes a request the server refused, after what the format
// says, and reports whether it was refused.
func (d *demoRun) refusal(err error, format string, args ...any) bool {
	ae, ok := httpError(err)
	if ok {
		d.note(format+": HTTP %d: %s", append(args, ae.Status, ae.Err.Message)...)
	}
	return ok
}

// incident replays 2022: an engineer holding grants on two tenants, plus
// a leaked service key of a third, sweeps from one machine.
func (d *demoRun) incident(ctx context.Context, globexAdmin *client.Client, globexID, globexList, initechID, initechList string) error {
	srv, say, note := d.srv, d.say, d.note
	say("the 2022 incident, replayed: the engineer holds grants on two tenants and has a leaked service key of a third")
	must(globexAdmin.SetSupportSettings(ctx, globexID, custos.SupportSettingsRequest{SupportAccess: true}))
	must(globexAdmin.CreateGrant(ctx, globexID, custos.CreateGrantRequest{StaffID: d.staffID, Scope: custos.ScopeViewMasked, Duration: "1h"}))
	leaked := d.keyFor(custos.KindService, initechID, "initech-crm-sync", custos.ScopeTokensRead)
	secKey := d.keyFor(custos.KindStaffSecurity, "", "security-oncall")
	sec := newClient(srv.URL, secKey)
	d.sec = sec
	detected := func() {
		for range 300 {
			srv.Log.Sync(ctx)
			if srv.Detector.Next() >= srv.Log.Size() {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		d.notified()
	}
	detected()
	note("(Acme's grant ended earlier; Globex grants 1h; the CRM key of Initech leaked from a sync job)")

	start := time.Now()
	page := must(d.staff.ListSupportContacts(ctx, globexID, globexList, client.PageOptions{Limit: 50}))
	note("the engineer pages through Globex: %d masked contacts", len(page.Items))
	svc := newClient(srv.URL, leaked)
	toks := must(svc.ListTokens(ctx, initechID, initechList, client.PageOptions{Limit: 500}))
	note("and, from the same laptop, lists Initech's list with the leaked key: %d tokens", len(toks.Items))
	detected()
	r, ok := d.hook.wait("network-sweeps-tenants", 5*time.Second)
	if !ok {
		return errors.New("demo: the incident raised no alert")
	}
	note("the alert reached the security team's webhook %s after the sweep's last request", time.Since(start).Round(time.Millisecond))

	var a *custos.Alert
	for al, err := range sec.Alerts(ctx, custos.AlertOpen) {
		check(err)
		if al.RuleID == "network-sweeps-tenants" {
			a = al
		}
	}
	if a == nil {
		return errors.New("demo: no network-sweeps-tenants alert listed")
	}
	note("alert %s [%s] %s", a.ID, a.Severity, a.Title)
	note("  evidence: audit entries %v (each provable with custos log proof --index N)", a.Evidence)
	for _, act := range a.Actions {
		note("  containment: %s", act)
	}
	note("  (every request of this demo comes from 127.0.0.1, so Acme's mailer key, used from the same network, is contained too)")
	_, err := d.staff.ListSupportContacts(ctx, globexID, globexList, client.PageOptions{Limit: 1})
	d.refusal(err, "the engineer's next request")
	_, err = svc.ListTokens(ctx, initechID, initechList, client.PageOptions{Limit: 1})
	d.refusal(err, "the leaked key's next request")
	_, err = globexAdmin.Export(ctx, globexID, globexList, custos.FormatCSV, io.Discard)
	d.refusal(err, "Globex's own export, until security lifts the freeze")

	say("the signed webhook the security team received (Standard Webhooks)")
	for _, h := range []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"} {
		note("%s: %s", strings.ToLower(h), r.header.Get(h))
	}
	var pretty bytes.Buffer
	json.Indent(&pretty, r.body, "   ", "  ")
	note("%s", pretty.String())
	key, _ := notify.WebhookKey(d.hook.secret)
	if err := notify.VerifyWebhook(key, r.header, r.body, time.Now(), 5*time.Minute); err != nil {
		return fmt.Errorf("demo: the webhook does not verify: %w", err)
	}
	note("signature verified with the shared whsec_ secret (HMAC-SHA256 over id.timestamp.body)")

	must(sec.Unfreeze(ctx, globexID, "reviewed "+a.ID+": Globex's own exports may resume"))
	must(sec.AckAlert(ctx, a.ID, "engineer suspended, key revoked, customers informed"))
	note("security acknowledges %s and lifts Globex's freeze, with a reason (both audited)", a.ID)
	d.notified()
	return nil
}

// phish replays what happens to a leaked export: a phisher mails every
// address in it. Its mailer hands each domain's mail to that domain's
// mail server; the canary domain's is custos's inbound listener, the
// trap. The alert that fires names the export and who made it.
func (d *demoRun) phish(ctx context.Context, export []byte, inbound string, canaryDomains []string) error {
	srv, say, note := d.srv, d.say, d.note
	say("the Acme export leaks: a phisher mails every address in it, and the canaries in it reach custos's inbound trap")
	rows, err := csv.NewReader(bytes.NewReader(export)).ReadAll()
	if err != nil || len(rows) < 2 {
		return fmt.Errorf("demo: the export does not read as CSV: %v", err)
	}
	col := slices.Index(rows[0], "email")
	if col < 0 {
		return errors.New("demo: the export has no email column")
	}
	byDomain := map[string][]string{}
	for _, row := range rows[1:] {
		if at := strings.LastIndexByte(row[col], '@'); at > 0 {
			dom := strings.ToLower(row[col][at+1:])
			byDomain[dom] = append(byDomain[dom], row[col])
		}
	}
	var trapped []string
	for _, dom := range canaryDomains {
		trapped = append(trapped, byDomain[dom]...)
	}
	if len(trapped) == 0 {
		return errors.New("demo: the export holds no canary address")
	}
	note("%d addresses in %d domains; the %d at the canary domain go to its mail server, custos's inbound listener on %s, which answers \"250 OK\" as any would (the other domains' servers are elsewhere: not part of this demo)",
		len(rows)-1, len(byDomain), len(trapped), inbound)
	start := time.Now()
	for batch := range slices.Chunk(trapped, 40) { // the listener takes 50 recipients a message
		if err := phishMail(inbound, batch); err != nil {
			return fmt.Errorf("demo: the phisher's mail to the canary domain: %w", err)
		}
	}

	sent := time.Since(start)
	var alerts []*custos.Alert
	var first time.Duration // until the first canary-mail alert existed
	for range 300 {
		srv.Log.Sync(ctx)
		alerts = alerts[:0]
		for al, err := range d.sec.Alerts(ctx, custos.AlertOpen) {
			check(err)
			if al.RuleID == "canary-mail" {
				alerts = append(alerts, al)
			}
		}
		if len(alerts) > 0 && first == 0 {
			first = time.Since(start)
		}
		if len(alerts) > 0 && srv.Detector.Next() >= srv.Log.Size() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(alerts) == 0 {
		return errors.New("demo: mail to the canaries raised no alert")
	}
	d.notified()
	note("the phisher's mail took %s to hand over; the trap's critical alert existed %s after it started: %d canary-mail alert(s)",
		sent.Round(time.Millisecond), first.Round(time.Millisecond), len(alerts))
	var evidence string
	for _, a := range alerts {
		note("alert %s [%s] %s", a.ID, a.Severity, a.Title)
		for _, i := range a.Evidence {
			var l struct {
				Detail string `json:"detail"`
			}
			json.Unmarshal(must(srv.Log.Entry(ctx, i)), &l)
			note("  #%d %s", i, l.Detail)
			if evidence == "" && strings.Contains(l.Detail, "export canary") {
				evidence = evidenceRE.FindString(l.Detail)
			}
		}
	}
	exported := false
	for _, a := range trapped {
		t := must(d.sec.Trace(ctx, a))
		if t.Kind == custos.TraceExport {
			exported = true
			note("custos trace on one of them: the export of list %s (tenant %s) made by %s with key %s at %s, request %s",
				t.ListID, t.TenantID, t.Principal, t.KeyID, t.ExportedAt.Format(time.TimeOnly), t.RequestID)
			break
		}
	}
	if !exported || evidence == "" {
		return errors.New("demo: the trap did not attribute the mail to the export")
	}
	ev := must(d.sec.Evidence(ctx, evidence))
	note("custos evidence %s (security reads what the trap kept; the raw %d-byte message only with --raw FILE):", evidence, len(ev.Raw))
	for _, line := range strings.Split(evidenceText(&ev.Evidence), "\n") {
		note("  │ %s", line)
	}
	return nil
}

var evidenceRE = regexp.MustCompile(`\bev_[a-z0-9]+`)

// phishMail is the phisher's mailer: one message to rcpts through the
// mail server at addr.
func phishMail(addr string, rcpts []string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("mx1.bulk-sender.example"); err != nil {
		return err
	}
	if err := c.Mail("billing@acme-shoes-refunds.example", nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Received: from laptop.bulk-sender.example (unknown [203.0.113.7])\r\n\tby mx1.bulk-sender.example; %s\r\n"+
		"From: Acme Shoes <billing@acme-shoes-refunds.example>\r\nTo: undisclosed-recipients:;\r\nSubject: Your refund is waiting\r\n"+
		"Date: %s\r\nMessage-ID: <%d@bulk-sender.example>\r\n\r\nConfirm your card to receive your refund: http://acme-shoes-refunds.example/r\r\n",
		time.Now().Format(time.RFC1123Z), time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

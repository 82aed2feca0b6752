package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

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
	hook     *hookReceiver
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

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

// demoIncident replays 2022: an engineer holding grants on two tenants,
// plus a leaked service key of a third, sweeps from one machine.
func (m *Main) demoIncident(ctx context.Context, srv *node.Node, op *client,
	keyFor func(custos.Kind, string, string, ...custos.Scope) (string, error),
	staff *client, staffID, globexID, globexList, globexAdminKey, initechID, initechList string, hook *hookReceiver,
	say, note func(string, ...any), notified func()) error {
	say("the 2022 incident, replayed: the engineer holds grants on two tenants and has a leaked service key of a third")
	globexAdmin := &client{base: srv.URL, key: globexAdminKey, http: http.DefaultClient}
	if err := globexAdmin.json(ctx, "PUT", "/v1/tenants/"+globexID+"/support-access", map[string]any{"support_access": true}, nil); err != nil {
		return err
	}
	if err := globexAdmin.json(ctx, "POST", "/v1/tenants/"+globexID+"/grants", map[string]any{"staff_id": staffID, "scope": "view_masked", "duration": "1h"}, nil); err != nil {
		return err
	}
	leaked, err := keyFor(custos.KindService, initechID, "initech-crm-sync", custos.ScopeTokensRead)
	if err != nil {
		return err
	}
	secKey, err := keyFor(custos.KindStaffSecurity, "", "security-oncall")
	if err != nil {
		return err
	}
	sec := &client{base: srv.URL, key: secKey, http: http.DefaultClient}
	detected := func() {
		d := srv.Detector
		for range 300 {
			srv.Log.Sync(ctx)
			if d.Next() >= srv.Log.Size() {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		notified()
	}
	detected()
	note("(Acme's grant ended earlier; Globex grants 1h; the CRM key of Initech leaked from a sync job)")

	start := time.Now()
	var page custos.Page[custos.MaskedContact]
	if err := staff.json(ctx, "GET", "/v1/tenants/"+globexID+"/support/lists/"+globexList+"/contacts?limit=50", nil, &page); err != nil {
		return err
	}
	note("the engineer pages through Globex: %d masked contacts", len(page.Items))
	svc := &client{base: srv.URL, key: leaked, http: http.DefaultClient}
	var toks custos.Page[custos.TokenEntry]
	err = svc.json(ctx, "GET", "/v1/tenants/"+initechID+"/lists/"+initechList+"/tokens?limit=500", nil, &toks)
	if err != nil {
		return err
	}
	note("and, from the same laptop, lists Initech's list with the leaked key: %d tokens", len(toks.Items))
	detected()
	r, ok := hook.wait("network-sweeps-tenants", 5*time.Second)
	if !ok {
		return errors.New("demo: the incident raised no alert")
	}
	note("the alert reached the security team's webhook %s after the sweep's last request", time.Since(start).Round(time.Millisecond))

	var alerts struct{ Items []custos.Alert }
	if err := sec.json(ctx, "GET", "/v1/alerts?status=open", nil, &alerts); err != nil {
		return err
	}
	var a *custos.Alert
	for i := range alerts.Items {
		if alerts.Items[i].RuleID == "network-sweeps-tenants" {
			a = &alerts.Items[i]
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
	var ae *apiError
	if err := staff.json(ctx, "GET", "/v1/tenants/"+globexID+"/support/lists/"+globexList+"/contacts?limit=1", nil, nil); errors.As(err, &ae) {
		note("the engineer's next request: HTTP %d: %s", ae.Status, ae.Message)
	}
	if err := svc.json(ctx, "GET", "/v1/tenants/"+initechID+"/lists/"+initechList+"/tokens?limit=1", nil, nil); errors.As(err, &ae) {
		note("the leaked key's next request: HTTP %d: %s", ae.Status, ae.Message)
	}
	if err := globexAdmin.do(ctx, "GET", "/v1/tenants/"+globexID+"/lists/"+globexList+"/export?format=csv", "", nil, io.Discard); errors.As(err, &ae) {
		note("Globex's own export, until security lifts the freeze: HTTP %d", ae.Status)
	}

	say("the signed webhook the security team received (Standard Webhooks)")
	for _, h := range []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"} {
		note("%s: %s", strings.ToLower(h), r.header.Get(h))
	}
	var pretty bytes.Buffer
	json.Indent(&pretty, r.body, "   ", "  ")
	note("%s", pretty.String())
	key, _ := notify.WebhookKey(hook.secret)
	if err := notify.VerifyWebhook(key, r.header, r.body, time.Now(), 5*time.Minute); err != nil {
		return fmt.Errorf("demo: the webhook does not verify: %w", err)
	}
	note("signature verified with the shared whsec_ secret (HMAC-SHA256 over id.timestamp.body)")

	if err := sec.json(ctx, "POST", "/v1/tenants/"+globexID+"/unfreeze", map[string]string{"reason": "reviewed " + a.ID + ": Globex's own exports may resume"}, nil); err != nil {
		return err
	}
	if err := sec.json(ctx, "POST", "/v1/alerts/"+a.ID+"/ack", map[string]string{"note": "engineer suspended, key revoked, customers informed"}, nil); err != nil {
		return err
	}
	note("security acknowledges %s and lifts Globex's freeze, with a reason (both audited)", a.ID)
	notified()
	return nil
}

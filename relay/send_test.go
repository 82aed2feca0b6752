package relay

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/vault"
	"github.com/google/go-cmp/cmp"
)

// TestSendResults: the HTTP path answers each recipient in request
// order; only deliverable, non-canary recipients reach the upstream.
func TestSendResults(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.contact(t, "ada@example.test", `{"first_name":"Ada"}`, custos.ConsentSubscribed)
	unsub := e.contact(t, "unsub@example.test", "", custos.ConsentUnsubscribed)
	canary := e.canaries(t, ada, unsub)[0]
	unknown := custos.NewID(custos.PrefixContact)
	ctx := e.as(t, e.key(t, custos.ScopeSend))

	for _, tc := range []struct {
		name string
		req  custos.SendRequest
	}{
		{"whole message", custos.SendRequest{Message: campaign}},
		{"template", custos.SendRequest{Template: &custos.MessageTemplate{From: "shop@vendor.test", Subject: "Hi {{attributes.first_name}}", Text: "Dear {{attributes.first_name}}"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.sink.Messages())
			req := tc.req
			req.Recipients = []string{unknown, ada, "ada@example.test", canary, unsub}
			res, err := e.relay.Send(ctx, e.tenant, &req)
			if err != nil {
				t.Fatal(err)
			}
			want := []custos.RecipientResult{
				{Token: unknown, Status: custos.SendRefused, Reason: custos.RefuseUnknown},
				{Token: ada, Status: custos.SendSent},
				{Token: "ada@example.test", Status: custos.SendRefused, Reason: custos.RefuseNotToken},
				{Token: canary, Status: custos.SendSent},
				{Token: unsub, Status: custos.SendRefused, Reason: custos.RefuseUnsubscribed},
			}
			if d := cmp.Diff(want, res.Recipients); d != "" {
				t.Fatalf("recipients (-want +got):\n%s", d)
			}
			if res.Sent != 2 || res.Refused != 3 || res.Deferred != 0 || !custos.ValidID(custos.PrefixMessage, res.MessageID) {
				t.Fatalf("result %+v", res)
			}
			// The canary goes upstream like ada (so relay traffic carries
			// it); nothing refused does.
			var to []string
			for _, m := range e.sink.Messages()[before:] {
				to = append(to, m.To...)
			}
			if len(to) != 2 || to[0] == to[1] || !slices.Contains(to, "ada@example.test") {
				t.Fatalf("sink got %q, want ada's and the canary's messages", to)
			}
		})
	}
	e.noPlaintext(t, "ada@example.test", "unsub@example.test")
}

func TestSendRefusesWhole(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)
	other := e.newList(t, e.admin, e.tenant)
	for _, tc := range []struct {
		name string
		key  []custos.Scope
		req  custos.SendRequest
		code string
	}{
		{"no message", []custos.Scope{custos.ScopeSend}, custos.SendRequest{Recipients: []string{ada}}, custos.EINVALID},
		{"malformed message", []custos.Scope{custos.ScopeSend}, custos.SendRequest{Message: "no header here\r\n", Recipients: []string{ada}}, custos.EINVALID},
		{"no send scope", []custos.Scope{custos.ScopeTokensRead}, custos.SendRequest{Message: campaign, Recipients: []string{ada}}, custos.EFORBIDDEN},
		{"list other than the key's", []custos.Scope{custos.ScopeSendList(e.list)}, custos.SendRequest{ListID: other, Message: campaign, Recipients: []string{ada}}, custos.EFORBIDDEN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.sendLeaves(t))
			_, err := e.relay.Send(e.as(t, e.key(t, tc.key...)), e.tenant, &tc.req)
			if custos.ErrorCode(err) != tc.code {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
			// Every refusal is recorded, once, whether the relay or the
			// vault refused.
			ls := e.sendLeaves(t)
			if len(ls) != before+1 || ls[len(ls)-1].Code != tc.code || ls[len(ls)-1].Outcome == "ok" {
				t.Fatalf("leaves after the refusal: %d (was %d), last %+v", len(ls), before, ls[len(ls)-1])
			}
		})
	}
	if n := len(e.sink.Messages()); n != 0 {
		t.Fatalf("sink got %d", n)
	}
}

// TestSendDeferrals: a recipient past the rate limit is deferred and not
// resolved; an unreachable upstream defers the rest.
func TestSendDeferrals(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	down := closedAddr(t)
	e := newEnv(t, func(c *Config) {
		c.PerKey, c.PerTenant, c.Now = 2, -1, func() time.Time { return now }
		c.Upstream.Addr = down
	})
	var toks []string
	for _, a := range []string{"a@example.test", "b@example.test", "c@example.test"} {
		toks = append(toks, e.contact(t, a, "", custos.ConsentSubscribed))
	}
	res, err := e.relay.Send(e.as(t, e.key(t, custos.ScopeSend)), e.tenant, &custos.SendRequest{Message: campaign, Recipients: toks})
	if err != nil {
		t.Fatal(err)
	}
	want := []custos.RecipientResult{
		{Token: toks[0], Status: custos.SendDeferred, Reason: ReasonUpstreamUnavailable},
		{Token: toks[1], Status: custos.SendDeferred, Reason: ReasonUpstreamUnavailable},
		{Token: toks[2], Status: custos.SendDeferred, Reason: custos.RefuseRateLimited},
	}
	if d := cmp.Diff(want, res.Recipients); d != "" {
		t.Fatalf("recipients (-want +got):\n%s", d)
	}
	if res.Deferred != 3 || res.Sent != 0 {
		t.Fatalf("counts %+v", res)
	}
	leaves := e.sendLeaves(t)
	if len(leaves) != 2 {
		t.Fatalf("%d contact.send leaves, want 2 (the rate-limited recipient is not resolved)", len(leaves))
	}
	for _, l := range leaves {
		if l.Tokens[0] == toks[2] {
			t.Fatal("the rate-limited recipient was resolved")
		}
	}
}

// TestDeliverAllForgets: after delivery no address or message is left in
// what the vault handed over; the message bytes are zeroed.
func TestDeliverAllForgets(t *testing.T) {
	p := smtptest.NewPKI(t)
	s := startSink(t, p, smtptest.STARTTLS)
	r := New(nil, Config{Upstream: Upstream{Addr: s.Addr, Username: sinkUser, Password: sinkPass, RootCAs: p.Pool, Conns: 2}, BounceDomain: bounceDomain})
	defer r.Close()
	var bufs [][]byte
	ds := make([]vault.Delivery, 4)
	for i := range ds {
		bufs = append(bufs, []byte("Subject: x\r\n\r\nsecret body\r\n"))
		ds[i] = vault.Delivery{Token: custos.NewID(custos.PrefixContact), To: "someone@example.test", Message: bufs[i], ReturnPath: "bounce+x"}
	}
	ds[1].Canary = true
	ds[2] = vault.Delivery{Token: ds[2].Token, Refused: custos.RefuseUnknown}
	out := make([]custos.RecipientResult, len(ds))
	r.deliverAll(context.Background(), r.state().up, ds, out)
	for i, d := range ds {
		if d.To != "" || d.Message != nil {
			t.Errorf("delivery %d keeps its plaintext: %+v", i, d)
		}
	}
	for i, b := range bufs {
		if i != 2 && !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("message %d not zeroed: %q", i, b)
		}
	}
	if got := s.Messages(); len(got) != 3 || !strings.Contains(string(got[0].Data), "secret body") {
		t.Fatalf("sink got %d messages, want 3 (the canary too, not the refused)", len(got))
	}
	wantStatus := []string{custos.SendSent, custos.SendSent, custos.SendRefused, custos.SendSent}
	for i, rr := range out {
		if rr.Status != wantStatus[i] {
			t.Errorf("recipient %d: %s, want %s", i, rr.Status, wantStatus[i])
		}
	}
}

// TestLimits: the bucket arithmetic — a burst of one second's worth,
// refilled with time, charged to key and tenant together.
func TestLimits(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimits(3, 5)
	steps := []struct {
		key  string
		n    int
		at   time.Duration
		want int
	}{
		{"k1", 2, 0, 2},
		{"k1", 2, 0, 1},                      // the key's burst of 3
		{"k2", 5, 0, 2},                      // the tenant's 5, 3 already spent
		{"k2", 1, 0, 0},                      //
		{"k1", 5, 500 * time.Millisecond, 1}, // half a second: 1.5 for the key, 2.5 for the tenant
		{"k2", 5, 10 * time.Second, 3},       // full again: the key's 3
	}
	for i, s := range steps {
		if got := l.take(s.key, "tn", s.n, now.Add(s.at)); got != s.want {
			t.Fatalf("step %d: take(%s, %d) = %d, want %d", i, s.key, s.n, got, s.want)
		}
	}
	unlimited := newLimits(-1, -1)
	if got := unlimited.take("k", "t", 1000, now); got != 1000 {
		t.Fatalf("unlimited: %d", got)
	}
}

// TestTemplateCache: a campaign submitted again is parsed once; a
// different message is its own template; a large one is never kept; the
// cache never holds more than its bound.
func TestTemplateCache(t *testing.T) {
	var c templateCache
	msg := func(i int) []byte {
		return []byte(fmt.Sprintf("From: a@b.test\r\nSubject: campaign %d {{attributes.first_name}}\r\n\r\nHi {{attributes.first_name}}\r\n", i))
	}
	a, err := c.parse(msg(1))
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.parse(msg(1)); again != a {
		t.Error("the same message was parsed again")
	}
	if other, _ := c.parse(msg(2)); other == a || other.Digest() == a.Digest() {
		t.Error("a different message got the first one's template")
	}
	big := append(msg(3), bytes.Repeat([]byte("x"), maxCachedTemplateBytes)...)
	b1, _ := c.parse(big)
	if b2, _ := c.parse(big); b1 == nil || b1 == b2 {
		t.Error("a large message was cached (or not parsed)")
	}
	if _, err := c.parse([]byte("not a message")); err == nil {
		t.Error("a malformed message parsed")
	}
	for i := range 3 * maxCachedTemplates {
		if _, err := c.parse(msg(10 + i)); err != nil {
			t.Fatal(err)
		}
		if len(c.m) > maxCachedTemplates {
			t.Fatalf("%d templates cached, bound %d", len(c.m), maxCachedTemplates)
		}
	}
}

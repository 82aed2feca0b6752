package relay

import (
	"context"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestRelayedCanaries (issue 20): the relay delivers canaries like any
// recipient — a list's canaries and the watermark rows of the reader
// whose pages are sent to — so relay traffic carries them; the trap lets
// the relay's own copy through once and traps everything else: a second
// copy, another sender, and a copy whose kept row was edited by hand to
// re-arm it. The alert names the relay send that carried the canary.
func TestRelayedCanaries(t *testing.T) {
	s := newInboundStack(t)
	// A pipeline builds its recipient list by paging (its pages carry its
	// watermark rows) and sends to every token on it.
	page, err := s.vault.Contacts(s.admin, s.tenant, s.list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	real := map[string]bool{}
	for _, c := range s.contacts {
		real[c.Token] = true
	}
	var tokens, marks []string
	for _, c := range page.Items {
		tokens = append(tokens, c.Token)
		if !real[c.Token] {
			marks = append(marks, c.Token)
		}
	}
	var up Upstream
	s.approveUpstream(t, &up)
	message := custos.NewID(custos.PrefixMessage)
	ds, err := s.vault.Send(s.admin, &vault.Outgoing{Tenant: s.tenant, Upstream: up.ID, MessageID: message, Template: strings.Repeat("0", 64), Tokens: tokens,
		Render: func(c *custos.Contact) ([]byte, error) { return []byte("To: " + c.Email + "\r\n\r\nhi\r\n"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	var canaries []vault.Delivery
	for _, d := range ds {
		switch {
		case real[d.Token]:
			if d.Canary || d.Refused != "" || d.To == "" {
				t.Errorf("real contact %s: %+v", d.Token, d)
			}
		case d.Refused == custos.RefuseUnknown:
			// A watermark row answered as unknown tells it from a real row.
			t.Errorf("watermark or canary token %s refused as unknown", d.Token)
		case d.Refused == "":
			if !d.Canary || !strings.HasSuffix(d.To, "@"+testCanaryDomain) || d.ReturnPath == "" {
				t.Errorf("canary %s: canary %v, return path %q", d.Token, d.Canary, d.ReturnPath)
			}
			canaries = append(canaries, d)
		}
	}
	if len(marks) < 2 || len(canaries) < 2 {
		t.Fatalf("%d canary tokens on the page, %d canary deliveries; want the page's watermark rows delivered", len(marks), len(canaries))
	}
	// CheckRecipient (the SMTP listener's RCPT check) answers the same.
	for _, tok := range marks {
		if r, err := s.vault.CheckRecipient(s.admin, s.tenant, "", tok, false); err != nil || r == custos.RefuseUnknown {
			t.Errorf("RCPT check of canary token %s: %q, %v", tok, r, err)
		}
	}

	srv := startInbound(t, s.vault, Config{})
	deliver := func(from string, d vault.Delivery) {
		t.Helper()
		c := srv.dial(t, "", "upstream.mail.example")
		if err := sendOn(c, from, []string{d.To}, d.Message); err != nil {
			t.Fatalf("deliver to the canary: %v\n%s", err, srv.logs.String())
		}
	}
	own := func(d vault.Delivery) string { return d.ReturnPath + "@" + testBounceDomain }
	trapped := func() int { return len(s.leaves(t, custos.ActionCanaryMail)) }

	// The relay's own copies, through the upstream: nothing trapped.
	for _, d := range canaries {
		deliver(own(d), d)
	}
	if n := trapped(); n != 0 {
		t.Fatalf("the relay's own deliveries raised %d canary.mail entries, want 0", n)
	}
	// A second copy with the same envelope is not the relay's.
	deliver(own(canaries[0]), canaries[0])
	hits := s.leaves(t, custos.ActionCanaryMail)
	if len(hits) != 1 {
		t.Fatalf("a second copy raised %d entries, want 1", len(hits))
	}
	if !strings.Contains(hits[0].Detail, "relayed in message "+message) {
		t.Errorf("the alert does not name the relay send: %q", hits[0].Detail)
	}
	if strings.Contains(hits[0].Raw, canaries[0].To) || strings.Contains(hits[0].Raw, canaries[0].Token) {
		t.Errorf("the entry names the canary: %s", hits[0].Raw)
	}
	// A phisher with the list from relay traffic.
	deliver("promo@bad.example", canaries[1])
	if n := trapped(); n != 2 {
		t.Fatalf("mail from another sender: %d entries, want 2", n)
	}
	// An insider re-arms the consumed row by hand: its MAC fails, so the
	// copy is trapped (and the row's integrity alert raised).
	if _, err := s.stack.DB.Write.ExecContext(context.Background(), `UPDATE canary_sends SET arrived_at = NULL`); err != nil {
		t.Fatal(err)
	}
	deliver(own(canaries[1]), canaries[1])
	if n := trapped(); n != 3 {
		t.Fatalf("a copy matched by a re-armed row: %d entries, want 3", n)
	}
}

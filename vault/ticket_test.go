package vault_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// ticketSecret signs the ticket webhooks of these tests.
var ticketSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("ticket-webhook-test-key-32-bytes"))

func ticketKey(t *testing.T) []byte {
	k, err := notify.WebhookKey(ticketSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTicketPolicy: a tenant requires staff reasons to cite one of its
// tickets and has a webhook confirm it. A reveal whose reason cites none,
// or one the ticket system does not know, is refused (reason_insufficient);
// a ticket system that errs, is slow or is gone refuses too (fail closed);
// the webhook hears the tenant id and the ticket id and nothing else; the
// webhook URL is read back only as "set"; the policy cleared in the
// database leaves the tenant with no settings (support access off), not
// with no policy.
func TestTicketPolicy(t *testing.T) {
	f := newFixtureWith(t, vault.Options{TicketTimeout: 300 * time.Millisecond, TicketSecret: ticketSecret, TicketNetworks: []string{"127.0.0.0/8"}})
	admin, staff, tenant, _, tokens, _ := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 20)

	var mu sync.Mutex
	var bodies []string
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := notify.VerifyWebhook(ticketKey(t), r.Header, b, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("ticket request not signed: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		var q struct{ Ticket string }
		json.Unmarshal(b, &q)
		switch q.Ticket {
		case "SUP-1234":
			w.WriteHeader(http.StatusOK)
		case "SUP-5000":
			w.WriteHeader(http.StatusInternalServerError)
		case "SUP-6000":
			<-release // slower than the timeout
		case "SUP-7000":
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	var once sync.Once
	stop := func() { once.Do(func() { close(release); ts.Close() }) }
	defer stop()

	for _, bad := range []custos.SupportSettings{
		{TicketPattern: "SUP-("},
		{TicketPattern: "x*"},
		{TicketPattern: strings.Repeat("a", custos.MaxTicketPattern+1)},
		{TicketPattern: "SUP-[0-9]+", TicketWebhook: "http://tickets.example.com/check"},
		{TicketPattern: "SUP-[0-9]+", TicketWebhook: "https://user:pw@tickets.example.com/check"},
		{TicketWebhook: "https://tickets.example.com/check"},
	} {
		bad.SupportAccess, bad.MaxGrant = true, custos.Duration(24*time.Hour)
		wantCode(t, "settings "+bad.TicketPattern+" "+bad.TicketWebhook, f.vault.SetSupportSettings(admin, tenant, &bad), custos.EINVALID)
	}
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour),
		TicketPattern: `SUP-[0-9]{3,8}`, TicketWebhook: ts.URL + "/secret-path/check"}); err != nil {
		t.Fatal(err)
	}
	st, err := f.vault.SupportSettings(admin, tenant)
	if err != nil || st.TicketPattern != `SUP-[0-9]{3,8}` || st.TicketWebhook != "set" {
		t.Fatalf("settings read back: %+v, %v", st, err)
	}
	// Written back as read ("set"), the settings keep the stored webhook
	// (the console's form and a read-modify-write rely on it).
	st.MaxGrant = custos.Duration(12 * time.Hour)
	if err := f.vault.SetSupportSettings(admin, tenant, st); err != nil {
		t.Fatal(err)
	}
	if got := storetest.Column[string](t, f.db.Read, `SELECT ticket_webhook FROM tenant_settings WHERE tenant_id = $1`, tenant); len(got) != 1 || got[0] != ts.URL+"/secret-path/check" {
		t.Fatalf("the webhook after writing the settings back: %v", got)
	}

	reveal := func(reason string) error {
		_, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonCustomerRequest, reason)
		return err
	}
	wantCode(t, "a reason citing no ticket", reveal("customer asked about a bounce on their account"), custos.EREASON)
	wantCode(t, "a ticket the system does not know", reveal("customer asked about a bounce, SUP-9999"), custos.EREASON)
	wantCode(t, "a ticket system that errs", reveal("customer asked about a bounce, SUP-5000"), custos.EREASON)
	wantCode(t, "a ticket system too slow", reveal("customer asked about a bounce, SUP-6000"), custos.EREASON)
	wantCode(t, "a ticket system that redirects", reveal("customer asked about a bounce, SUP-7000"), custos.EREASON)
	if err := reveal("customer asked about a bounce in SUP-1234 yesterday"); err != nil {
		t.Fatalf("a confirmed ticket: %v", err)
	}
	mu.Lock()
	for _, b := range bodies {
		var m map[string]string
		if err := json.Unmarshal([]byte(b), &m); err != nil || len(m) != 2 || m["tenant_id"] != tenant || !strings.HasPrefix(m["ticket"], "SUP-") {
			t.Fatalf("the webhook was sent %s; want the tenant id and the ticket id only", b)
		}
	}
	if len(bodies) != 5 {
		t.Fatalf("the webhook was asked %d times, want 5 (a reason citing no ticket asks nothing)", len(bodies))
	}
	mu.Unlock()
	for _, l := range leaves(t, f) {
		if b, _ := json.Marshal(l); strings.Contains(string(b), "secret-path") || strings.Contains(string(b), "bounce") {
			t.Fatalf("a leaf holds the webhook URL or the reason: %s", b)
		}
	}

	// Gone: refused.
	stop()
	wantCode(t, "a ticket system that is gone", reveal("customer asked about a bounce, SUP-1234"), custos.EREASON)

	// The policy removed behind custos's back: no settings at all.
	f.exec(t, `UPDATE tenant_settings SET ticket_pattern = NULL, ticket_webhook = NULL WHERE tenant_id = $1`, tenant)
	if err := reveal("customer asked about a bounce on their account"); err == nil {
		t.Fatal("a reveal without a ticket went through once the policy was cleared in the database")
	}
}

// TestTicketWebhookNoSSRF (issue 20): a tenant admin names the webhook
// URL, so custos must not be made to call what the admin could not reach
// itself. Loopback (by address or by a name that resolves to it), private
// and link-local addresses (the cloud metadata service) are refused at
// connection time — nothing reaches a server listening there — unless the
// vendor configured the range; a deployment without a signing secret
// sends no question at all. Every refusal refuses the reveal (fail closed)
// with reason_insufficient.
func TestTicketWebhookNoSSRF(t *testing.T) {
	var hits sync.Mutex
	n := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Lock()
		n++
		hits.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer ts.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(ts.URL, "http://"), ":")
	for _, tc := range []struct {
		name    string
		opts    vault.Options
		webhook string
		ok      bool
	}{
		{"loopback, not configured", vault.Options{TicketSecret: ticketSecret}, ts.URL + "/check", false},
		{"a name resolving to loopback, not configured", vault.Options{TicketSecret: ticketSecret}, "http://localhost:" + port + "/check", false},
		{"link-local metadata address", vault.Options{TicketSecret: ticketSecret}, "https://169.254.169.254/latest/meta-data", false},
		{"private address", vault.Options{TicketSecret: ticketSecret, TicketNetworks: []string{"127.0.0.0/8"}}, "https://10.1.2.3/check", false},
		{"IPv4-mapped loopback", vault.Options{TicketSecret: ticketSecret}, "https://[::ffff:127.0.0.1]:" + port + "/check", false},
		{"loopback configured, no signing secret", vault.Options{TicketNetworks: []string{"127.0.0.0/8"}}, ts.URL + "/check", false},
		{"loopback configured", vault.Options{TicketSecret: ticketSecret, TicketNetworks: []string{"127.0.0.0/8"}}, ts.URL + "/check", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.TicketTimeout = time.Second
			f := newFixtureWith(t, tc.opts)
			admin, staff, tenant, _, tokens, _ := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 3)
			if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour),
				TicketPattern: `SUP-[0-9]{3,8}`, TicketWebhook: tc.webhook}); err != nil {
				t.Fatal(err)
			}
			hits.Lock()
			before := n
			hits.Unlock()
			c, err := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonCustomerRequest, "customer asked about a bounce, SUP-1234")
			hits.Lock()
			reached := n - before
			hits.Unlock()
			if tc.ok {
				if err != nil || c == nil {
					t.Fatalf("reveal with a confirmed ticket: %v", err)
				}
				if reached != 1 {
					t.Fatalf("the webhook was asked %d times, want 1", reached)
				}
				return
			}
			wantCode(t, tc.name, err, custos.EREASON)
			if guarded := tc.opts.TicketSecret != ""; guarded && !strings.Contains(err.Error(), "may not call") {
				t.Errorf("refused for another reason than the target: %v", err)
			}
			if c != nil || reached != 0 {
				t.Fatalf("refused target: revealed %v, the listening server was reached %d times", c != nil, reached)
			}
		})
	}
}

package custos_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
)

// FuzzTicketPattern: whatever a tenant admin sends as a ticket pattern
// and a staff member as a reason, CompileTicketPattern refuses it with
// EINVALID or returns an RE2 pattern that matches no empty ticket, and
// FindTicket returns "" or a bounded, non-blank substring of the reason.
func FuzzTicketPattern(f *testing.F) {
	for _, p := range []string{`SUP-[0-9]{3,8}`, `(a*)*b`, `x*`, `(`, `\p{L}+-\d+`, `(?i)jira-[0-9]+`, strings.Repeat("a", 300)} {
		f.Add(p, "customer asked about SUP-1234 and JIRA-77")
	}
	f.Fuzz(func(t *testing.T, pattern, reason string) {
		re, err := custos.CompileTicketPattern(pattern)
		if err != nil {
			if custos.ErrorCode(err) != custos.EINVALID {
				t.Fatalf("CompileTicketPattern(%q): %v", pattern, err)
			}
			return
		}
		if re == nil {
			if pattern != "" {
				t.Fatalf("%q accepted as no pattern", pattern)
			}
			return
		}
		if len(pattern) > custos.MaxTicketPattern || re.MatchString("") {
			t.Fatalf("accepted %q", pattern)
		}
		tk := custos.FindTicket(re, reason)
		if tk != "" && (len(tk) > custos.MaxTicketID || !strings.Contains(reason, tk) || strings.TrimSpace(tk) == "") {
			t.Fatalf("FindTicket(%q, %q) = %q", pattern, reason, tk)
		}
		// "" (none) and "set" (keep the stored one) are the only values
		// accepted that are not a URL.
		if err := custos.CheckTicketWebhook(reason); err == nil && reason != "" && reason != custos.TicketWebhookKept && !strings.HasPrefix(reason, "https://") && !strings.HasPrefix(reason, "http://") {
			t.Fatalf("webhook %q accepted", reason)
		}
	})
}

// FuzzParseBlastQuery: whatever parameters a security engineer's browser
// or client sends to the blast radius (GET /v1/blast-radius, the
// console's page), ParseBlastQuery keeps the subject's values as sent,
// reads since and until only as RFC 3339 times, and refuses anything else
// with EINVALID; Validate then accepts exactly one subject.
func FuzzParseBlastQuery(f *testing.F) {
	f.Add("pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "", "", "", "2026-12-01T00:00:00Z", "")
	f.Add("", "", "10.0.0.0/8", "", "", "2026-12-02T00:00:00.5+01:00")
	f.Add("", "ak_x", "", "tn_y", "yesterday", "")
	f.Fuzz(func(t *testing.T, principal, key, source, tenant, since, until string) {
		v := url.Values{}
		for k, x := range map[string]string{"principal": principal, "key": key, "source": source, "tenant": tenant, "since": since, "until": until} {
			if x != "" {
				v.Set(k, x)
			}
		}
		q, err := custos.ParseBlastQuery(v)
		if err != nil {
			if custos.ErrorCode(err) != custos.EINVALID {
				t.Fatalf("ParseBlastQuery: %v", err)
			}
			return
		}
		if q.Principal != principal || q.Key != key || q.Source != source || q.Tenant != tenant {
			t.Fatalf("subject changed: %+v", q)
		}
		for _, c := range []struct {
			in string
			at time.Time
		}{{since, q.Since}, {until, q.Until}} {
			if c.in == "" && !c.at.IsZero() {
				t.Fatalf("no time read as %v", c.at)
			}
			if c.in != "" {
				if _, err := time.Parse(time.RFC3339Nano, c.in); err != nil {
					t.Fatalf("%q accepted as a time", c.in)
				}
			}
		}
		if err := q.Validate(); err == nil {
			n := 0
			for _, x := range []string{principal, key, source, tenant} {
				if x != "" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d subjects accepted", n)
			}
		}
	})
}

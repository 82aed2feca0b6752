package custos_test

import (
	"strings"
	"testing"

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
		if err := custos.CheckTicketWebhook(reason); err == nil && reason != "" && !strings.HasPrefix(reason, "https://") && !strings.HasPrefix(reason, "http://") {
			t.Fatalf("webhook %q accepted", reason)
		}
	})
}

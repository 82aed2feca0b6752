package custos

import (
	"net/url"
	"regexp"
	"strings"
)

// A tenant may require staff reasons to cite a ticket of its own (issue
// 20): a regular expression (Go's RE2: linear time, no backtracking, so a
// tenant's pattern cannot stall a reveal) that the reason must contain a
// match of, and optionally a webhook custos asks whether that ticket
// exists. Only the ticket id and the tenant id are sent.

// Bounds on a ticket pattern and on the ticket it finds.
const (
	MaxTicketPattern = 256
	MaxTicketID      = 64
	MaxTicketWebhook = 512
)

// CompileTicketPattern checks a tenant's ticket pattern: at most
// [MaxTicketPattern] bytes, valid RE2, and matching something — a pattern
// that matches the empty string would accept any reason. Empty is no
// pattern (nil, nil).
func CompileTicketPattern(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, nil
	}
	if len(p) > MaxTicketPattern {
		return nil, Errorf(EINVALID, "ticket_pattern: at most %d bytes", MaxTicketPattern)
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, Errorf(EINVALID, "ticket_pattern is not a regular expression (RE2 syntax), such as SUP-[0-9]{3,8}")
	}
	if re.MatchString("") {
		return nil, Errorf(EINVALID, "ticket_pattern matches an empty ticket: it would accept any reason")
	}
	return re, nil
}

// FindTicket returns the first ticket id re finds in reason, or "" if
// there is none or it is longer than [MaxTicketID].
func FindTicket(re *regexp.Regexp, reason string) string {
	t := re.FindString(reason)
	if len(t) > MaxTicketID || strings.TrimSpace(t) == "" {
		return ""
	}
	return t
}

// CheckTicketWebhook checks a ticket webhook URL: https, or http to a
// loopback host (a helper on the same machine); no user info (credentials
// TicketWebhookKept is how settings are read back when a ticket webhook is
// set (its URL may hold a secret path); written back as the webhook, it
// keeps the one stored, so a read-modify-write changes nothing else.
const TicketWebhookKept = "set"

// belong in the helper, not in a URL custos stores and shows).
func CheckTicketWebhook(s string) error {
	if s == "" || s == TicketWebhookKept {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || len(s) > MaxTicketWebhook || u.Host == "" || u.User != nil || u.Fragment != "" {
		return Errorf(EINVALID, "ticket_webhook must be an https URL of at most %d bytes, without credentials", MaxTicketWebhook)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"):
	default:
		return Errorf(EINVALID, "ticket_webhook must be https (http only to a loopback host)")
	}
	return nil
}

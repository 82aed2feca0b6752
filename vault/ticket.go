package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/notify"
)

// errTicketTarget refuses a connection to an address a tenant's webhook
// may not reach.
var errTicketTarget = errors.New("ticket webhook address not allowed")

// ticketAllowed parses the configured ranges a webhook may reach although
// they are internal (malformed entries are skipped: the node's config
// check refuses them first).
func ticketAllowed(ns []string) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range ns {
		if p, err := netip.ParsePrefix(n); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(n); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// internalAddr reports whether a is an address a tenant-named URL must
// not reach by default: loopback, private (RFC 1918, fc00::/7), link-local
// (cloud metadata at 169.254.169.254 included), shared (100.64.0.0/10),
// unspecified, multicast, or an IPv4-mapped form of any of them.
func internalAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsValid() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a) || netip.MustParsePrefix("0.0.0.0/8").Contains(a) ||
		netip.MustParsePrefix("64:ff9b::/96").Contains(a) // NAT64 of any IPv4 address
}

// ticketClient is the client ticket webhooks are called with: it follows
// no redirect (one could take the ticket id to a host the tenant did not
// name), uses no proxy from the environment, and refuses to connect to an
// internal address outside allowed — checked on the address actually
// dialled, after name resolution, so a name that resolves (or rebinds) to
// one is refused too.
func ticketClient(allowed []netip.Prefix) *http.Client {
	d := &net.Dialer{Timeout: DefaultTicketTimeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return errTicketTarget
		}
		a := ap.Addr().Unmap()
		if !internalAddr(a) {
			return nil
		}
		for _, p := range allowed {
			if p.Contains(a) {
				return nil
			}
		}
		return errTicketTarget
	}}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil, ForceAttemptHTTP2: true,
			TLSHandshakeTimeout: DefaultTicketTimeout, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// DefaultTicketTimeout bounds a ticket webhook's answer.
const DefaultTicketTimeout = 3 * time.Second

func setOrNot(s string) string {
	if s == "" {
		return "none"
	}
	return "set"
}

// checkTicket applies the tenant's ticket policy to a reveal's reason: the
// reason must contain a match of the tenant's pattern, and if the tenant
// has a webhook, the webhook must confirm that ticket exists. It fails
// closed: a webhook that cannot be reached, times out or answers anything
// but 2xx refuses the reveal. The webhook is sent the tenant id and the
// ticket id, nothing else; the refusal names neither.
func (v *Vault) checkTicket(ctx context.Context, st *custos.SupportSettings, tenant, reason string) error {
	if st.TicketPattern == "" {
		return nil
	}
	re, err := custos.CompileTicketPattern(st.TicketPattern)
	if err != nil {
		return err // stored by SetSupportSettings, which checks it: not reached
	}
	ticket := custos.FindTicket(re, reason)
	if ticket == "" {
		return custos.Errorf(custos.EREASON, "the reason must cite a ticket of the tenant's (its ticket_pattern)")
	}
	if st.TicketWebhook == "" {
		return nil
	}
	if len(v.ticketKey) == 0 {
		// Unsigned questions could be forged by anyone who can reach the
		// ticket system; none are sent.
		v.logger.WarnContext(ctx, "ticket webhook not called: no ticket_webhook_secret configured", "tenant", tenant)
		return custos.Errorf(custos.EREASON, "the tenant's ticket system cannot be asked (no signing secret configured): the ticket is not confirmed")
	}
	body, _ := json.Marshal(struct {
		TenantID string `json:"tenant_id"`
		Ticket   string `json:"ticket"`
	}{tenant, ticket})
	ctx, cancel := context.WithTimeout(ctx, v.ticketTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.TicketWebhook, bytes.NewReader(body))
	if err != nil {
		return custos.Errorf(custos.EREASON, "the tenant's ticket system could not be asked")
	}
	req.Header.Set("Content-Type", "application/json")
	// Signed as our alert webhooks are (Standard Webhooks): the ticket
	// system knows the question is custos's and fresh.
	id, ts := custos.NewID("msg"), strconv.FormatInt(v.now().Unix(), 10)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", "v1,"+notify.SignWebhook(v.ticketKey, id, ts, body))
	resp, err := v.ticketClient.Do(req)
	if err != nil {
		what := "could not be reached"
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			what = "did not answer in time"
		case errors.Is(err, errTicketTarget):
			what = "is at an address custos may not call"
		}
		v.logger.WarnContext(ctx, "ticket webhook failed", "tenant", tenant, "failure", what)
		return custos.Errorf(custos.EREASON, "the tenant's ticket system %s: the ticket is not confirmed", what)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return custos.Errorf(custos.EREASON, "the tenant's ticket system does not know the cited ticket")
	}
	v.logger.WarnContext(ctx, "ticket webhook refused", "tenant", tenant, "status", resp.StatusCode)
	return custos.Errorf(custos.EREASON, "the tenant's ticket system answered %s: the ticket is not confirmed", fmt.Sprint(resp.StatusCode))
}

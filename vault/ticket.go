package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/custos-dev/custos"
)

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
	resp, err := v.ticketClient.Do(req)
	if err != nil {
		what := "could not be reached"
		if errors.Is(err, context.DeadlineExceeded) {
			what = "did not answer in time"
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

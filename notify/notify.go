// Package notify is custos's durable notification outbox. A change that
// must be announced — an access request, a decision, a break-glass grant,
// later an alert — writes its [Message] into the outbox table in the same
// transaction as the change and its audit leaf, so a committed change is
// never left unannounced. A [Dispatcher] delivers pending messages to
// every configured [Sink], retrying with backoff until each sink has
// accepted it: nothing is dropped.
//
// Messages carry ids, codes and times only, never personal data: they
// travel to chat channels, pagers and mailboxes.
package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/custos-dev/custos"
)

// Severities.
const (
	SeverityInfo     = "info"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Audiences a message is addressed to. Sinks decide how an audience maps
// to people (a channel, a mailbox, a pager service).
const (
	ToTenantAdmins  = "tenant_admins"  // the admins of the message's tenant
	ToStaffSecurity = "staff_security" // the vendor's security staff
)

// ToPrincipal addresses one principal.
func ToPrincipal(id string) string { return "principal:" + id }

// Message is one notification.
type Message struct {
	ID        string            `json:"id"`
	Topic     string            `json:"topic"` // e.g. support.request, grant.created, break_glass.granted
	Severity  string            `json:"severity"`
	TenantID  string            `json:"tenant_id,omitempty"`
	To        []string          `json:"to"`
	Text      string            `json:"text"` // one line for people; ids and codes only
	Data      map[string]string `json:"data,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

// PrefixMessage is the ID prefix of outbox messages.
const PrefixMessage = "nt"

// Enqueue writes m into the outbox inside tx; it is delivered once tx
// commits. It fills m's ID and CreatedAt.
func Enqueue(ctx context.Context, tx *sql.Tx, m *Message, now time.Time) error {
	m.ID, m.CreatedAt = custos.NewID(PrefixMessage), now.UTC().Truncate(time.Millisecond)
	if m.Severity == "" {
		m.Severity = SeverityInfo
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO outbox (id, topic, tenant_id, payload, created_at, next_at) VALUES ($1, $2, $3, $4, $5, $5)`,
		m.ID, m.Topic, sql.NullString{String: m.TenantID, Valid: m.TenantID != ""}, string(b), m.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("enqueue notification: %w", err)
	}
	return nil
}

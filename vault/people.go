package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// People told by name (docs/notifications.md).
//
// A change that must be announced puts a notify.Message in the outbox in
// the transaction of its audit leaf; the message names an audience
// (notify.ToTenantAdmins, notify.ToPrincipal), never an address. The
// [PeopleSink] turns the audience into people when it delivers: the
// tenant's verified, unsuspended admins, or the named principal, each
// read with its row MAC checked — a principal row planted or altered in
// the database behind custos's back receives nothing. Each person gets one
// mail per message at its verified identity, unless it muted the topic
// and the topic is one that may be muted ([MutableTopics]).

// Topics of the notifications this file's callers add.
const (
	TopicGrantFirstUse = "grant.first_use"
	TopicGrantExpiring = "grant.expiring"
	TopicGrantExpired  = "grant.expired"
	TopicKeyExpiring   = "key.expiring"
	TopicKeyExpired    = "key.expired"
)

// MutableTopics are the informational topics a principal may mute. Every
// other topic is a security topic — someone asked for or got access to a
// tenant's data, break-glass, containment, a new principal, a deletion —
// and is always mailed: muting one is refused, and a muted row naming one
// (written behind custos's back) is ignored.
var MutableTopics = []string{
	TopicGrantExpiring, TopicGrantExpired, TopicKeyExpiring, TopicKeyExpired,
	"grant.created", "grant.ended", "grant.revoked", "support.decision", "principal.enrolled",
}

// Mutable reports whether topic may be muted.
func Mutable(topic string) bool { return slices.Contains(MutableTopics, topic) }

// PeopleSink mails outbox messages addressed to tenant admins or to one
// principal to the people behind them. Enrollment mails have their own
// sink ([EnrollmentSink]).
type PeopleSink struct {
	Vault  *Vault
	Mailer Mailer
	// Link names the path of the object a message is about (the API's
	// routes belong to the server: node wires server.NoticeLink); nil or
	// "" leaves the mail without one.
	Link func(*notify.Message) string
	// Decide names the page where the reader decides what the message
	// asks of them (the console's: node wires console.DecisionPath); nil
	// or "" for a message that asks nothing. The page still needs the
	// reader to sign in, and step up before approving.
	Decide func(*notify.Message) string
	// LinkBase prefixes the links in mails (the API's or the console's
	// public URL); empty leaves them as paths.
	LinkBase string
}

var _ notify.Sink = (*PeopleSink)(nil)

// Name implements notify.Sink.
func (*PeopleSink) Name() string { return "people" }

// Accepts implements notify.Accepter.
func (*PeopleSink) Accepts(m *notify.Message) bool {
	if m.Topic == TopicEnroll {
		return false
	}
	for _, to := range m.To {
		if to == notify.ToTenantAdmins && m.TenantID != "" || strings.HasPrefix(to, "principal:") {
			return true
		}
	}
	return false
}

// Deliver implements notify.Sink. A retried message mails only the
// people it has not reached yet (notify_mailed).
func (s *PeopleSink) Deliver(ctx context.Context, m *notify.Message) error {
	v := s.Vault
	people, err := v.audience(ctx, m)
	if err != nil {
		return fmt.Errorf("notification %s: find its recipients: %w", m.ID, err)
	}
	subject, body := s.compose(m)
	mailed := map[string]bool{} // identities mailed for this message in this pass
	for _, p := range people {
		if done, err := v.mailedTo(ctx, m.ID, p.ID); err != nil {
			return err
		} else if done {
			mailed[p.Identity] = true
			continue
		}
		muted, err := v.muted(ctx, p.ID, m.Topic)
		if err != nil {
			return err
		}
		if !muted && !mailed[p.Identity] { // one person behind two principals gets one mail
			to, err := v.identityAddress(ctx, p)
			if errors.Is(err, errNoAddress) {
				continue // a row changed behind custos's back: nobody to mail
			} else if err != nil {
				return fmt.Errorf("notification %s: %w", m.ID, err)
			}
			if err := s.Mailer.Send(ctx, to, subject, body); err != nil {
				// As for enrollment mails: a server's refusal quotes the
				// recipient; the outbox keeps the principal only.
				return fmt.Errorf("notification %s to the holder of %s was not accepted (%s)", m.ID, p.ID, mailErrorKind(err))
			}
			mailed[p.Identity] = true
		}
		if _, err := v.write.ExecContext(ctx, `INSERT INTO notify_mailed (message_id, principal_id, mailed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			m.ID, p.ID, ms(v.now())); err != nil {
			return fmt.Errorf("record notification mail: %w", err)
		}
	}
	return nil
}

// compose writes a mail from a message: its one line of ids and codes
// (never personal data) and a link to the object it is about.
func (s *PeopleSink) compose(m *notify.Message) (subject, body string) {
	subject = "[custos] " + m.Topic
	if m.TenantID != "" {
		subject += " on tenant " + m.TenantID
	}
	var b strings.Builder
	b.WriteString(m.Text)
	b.WriteString("\r\n")
	if s.Decide != nil {
		if page := s.Decide(m); page != "" {
			b.WriteString("\r\nDecide (sign in to the console first): " + s.LinkBase + page + "\r\n")
		}
	}
	if link := s.link(m); link != "" {
		b.WriteString("\r\nDetails: " + s.LinkBase + link + "\r\n")
	}
	fmt.Fprintf(&b, "\r\nNotification %s, %s, severity %s.\r\n", m.ID, m.CreatedAt.Format(time.RFC3339), m.Severity)
	if Mutable(m.Topic) {
		b.WriteString("You may stop these notices: custos notifications --principal <your id> --mute " + m.Topic + "\r\n")
	} else {
		b.WriteString("This is a security notice; it cannot be turned off.\r\n")
	}
	return subject, b.String()
}

func (s *PeopleSink) link(m *notify.Message) string {
	if s.Link == nil {
		return ""
	}
	return s.Link(m)
}

// audience resolves a message's addressees to principals, each read with
// its MAC checked; suspended and unverified ones are left out.
func (v *Vault) audience(ctx context.Context, m *notify.Message) ([]*custos.Principal, error) {
	var out []*custos.Principal
	seen := map[string]bool{}
	add := func(p *custos.Principal) {
		if !seen[p.ID] && !p.Suspended && p.VerifiedAt != nil && !strings.HasPrefix(p.Identity, "legacy::") {
			seen[p.ID] = true
			out = append(out, p)
		}
	}
	for _, to := range m.To {
		switch {
		case to == notify.ToTenantAdmins && custos.ValidID(custos.PrefixTenant, m.TenantID):
			ids, err := queryAll(ctx, v, func(r scanner) (string, error) {
				var id string
				return id, r.Scan(&id)
			}, `SELECT id FROM principals WHERE tenant_id = $1 AND kind = $2 ORDER BY id`, m.TenantID, string(custos.KindTenantAdmin))
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				p, err := v.findPrincipalTx(ctx, v.read, id)
				if custos.ErrorCode(err) == custos.ENOTFOUND {
					continue // its MAC fails: not a person custos made
				} else if err != nil {
					return nil, err
				}
				if p.Kind == custos.KindTenantAdmin && p.TenantID == m.TenantID {
					add(p)
				}
			}
		case strings.HasPrefix(to, "principal:"):
			p, err := v.findPrincipalTx(ctx, v.read, strings.TrimPrefix(to, "principal:"))
			if custos.ErrorCode(err) == custos.ENOTFOUND {
				continue
			} else if err != nil {
				return nil, err
			}
			add(p)
		}
	}
	return out, nil
}

func (v *Vault) mailedTo(ctx context.Context, message, principal string) (bool, error) {
	var n int
	err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM notify_mailed WHERE message_id = $1 AND principal_id = $2`, message, principal).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read notification mails: %w", err)
	}
	return n > 0, nil
}

// muted reports whether principal muted topic; a security topic is never
// muted, whatever the table says.
func (v *Vault) muted(ctx context.Context, principal, topic string) (bool, error) {
	if !Mutable(topic) {
		return false, nil
	}
	var n int
	err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM notify_muted WHERE principal_id = $1 AND topic = $2`, principal, topic).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read notification preferences: %w", err)
	}
	return n > 0, nil
}

// firstUse records the first use of grant g inside the transaction of the
// leaf of that use and, if it is the first, tells the tenant's admins.
// The row's insert is the guard: two concurrent first uses announce once.
func (v *Vault) firstUse(ctx context.Context, tx *sql.Tx, g *custos.Grant, what string) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO grant_uses (grant_id, first_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, g.ID, ms(v.now()))
	if err != nil {
		return fmt.Errorf("record grant use: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	return v.enqueue(ctx, tx, &notify.Message{Topic: TopicGrantFirstUse, Severity: notify.SeverityHigh, TenantID: g.TenantID, To: []string{notify.ToTenantAdmins},
		Text: fmt.Sprintf("staff %s used grant %s for the first time (%s); it ends %s", g.StaffID, g.ID, what, g.ExpiresAt.Format(time.RFC3339)),
		Data: map[string]string{"grant": g.ID, "staff": g.StaffID}})
}

// NotificationPrefs returns a principal's notification preferences, to
// that principal only.
func (v *Vault) NotificationPrefs(ctx context.Context, principal string) (*custos.NotificationPrefs, error) {
	l, err := v.authorizeSelf(ctx, custos.ActionNotifyRead, principal)
	if err != nil {
		return nil, err
	}
	prefs, err := v.readPrefs(ctx, principal)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return prefs, nil
}

// SetNotificationPrefs replaces a principal's muted topics, for that
// principal only; muting a security topic is refused.
func (v *Vault) SetNotificationPrefs(ctx context.Context, principal string, mute []string) (*custos.NotificationPrefs, error) {
	l, err := v.authorizeSelf(ctx, custos.ActionNotifySet, principal)
	if err != nil {
		return nil, err
	}
	if len(mute) > custos.MaxMutedTopics {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "muted: at most %d topics", custos.MaxMutedTopics))
	}
	muted := slices.Clone(mute)
	if muted == nil {
		muted = []string{}
	}
	slices.Sort(muted)
	muted = slices.Compact(muted)
	for _, t := range muted {
		if !Mutable(t) {
			return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "muted: only informational topics may be muted (%s); security notices always go out", strings.Join(MutableTopics, ", ")))
		}
	}
	l.Detail = "muted " + strings.Join(muted, " ")
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM notify_muted WHERE principal_id = $1`, principal); err != nil {
			return fmt.Errorf("clear preferences: %w", err)
		}
		for _, t := range muted {
			if _, err := tx.ExecContext(ctx, `INSERT INTO notify_muted (principal_id, topic) VALUES ($1, $2)`, principal, t); err != nil {
				return fmt.Errorf("save preferences: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &custos.NotificationPrefs{PrincipalID: principal, Muted: muted, Mutable: MutableTopics}, nil
}

// authorizeSelf authorizes action on the caller's own principal: nobody
// reads or sets another's preferences (an operator muting an admin's
// notices would be one person hiding something from another).
func (v *Vault) authorizeSelf(ctx context.Context, action custos.Action, principal string) (audit.Leaf, error) {
	by := custos.PrincipalFromContext(ctx)
	l, err := v.authorize(ctx, action, ownTenant(by))
	if err != nil {
		return l, err
	}
	if principal != by.ID {
		return l, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a principal reads and sets only its own notification preferences"))
	}
	return l, nil
}

func (v *Vault) readPrefs(ctx context.Context, principal string) (*custos.NotificationPrefs, error) {
	muted, err := queryAll(ctx, v, func(r scanner) (string, error) {
		var t string
		return t, r.Scan(&t)
	}, `SELECT topic FROM notify_muted WHERE principal_id = $1 ORDER BY topic`, principal)
	if err != nil {
		return nil, fmt.Errorf("read notification preferences: %w", err)
	}
	muted = slices.DeleteFunc(muted, func(t string) bool { return !Mutable(t) })
	return &custos.NotificationPrefs{PrincipalID: principal, Muted: muted, Mutable: MutableTopics}, nil
}

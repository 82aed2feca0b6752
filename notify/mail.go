package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

// Mailers send one mail to one person: the enrollment mails that carry a
// one-time secret to a principal's holder. Unlike sinks they address a
// person, so they are never given a notification meant for a channel.

// SMTPMailer sends through an SMTP relay (plain, to a local relay or a
// submission port the relay trusts by address).
type SMTPMailer struct {
	Addr string `json:"addr"` // host:port
	From string `json:"from"`
}

// Send implements vault.Mailer.
func (m *SMTPMailer) Send(ctx context.Context, to, subject, body string) error {
	if strings.ContainsAny(to+subject, "\r\n") {
		return errors.New("mail header holds a line break")
	}
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s",
		m.From, to, subject, time.Now().UTC().Format(time.RFC1123Z), body)
	return sendSMTP(ctx, m.Addr, m.From, []string{to}, []byte(msg))
}

// MailDir writes each mail as a file DIR/<address>/<time>.eml, mode 0600,
// for trying custos out on one machine without a mail server. Whoever can
// read the directory can read the secrets in it: it is for a laptop, not
// for production, and `custos serve` says so when it uses one.
type MailDir struct {
	Dir string
}

// Send implements vault.Mailer.
func (m *MailDir) Send(_ context.Context, to, subject, body string) error {
	if to == "" || strings.ContainsAny(to, `/\`) || strings.HasPrefix(to, ".") {
		return errors.New("maildir: address is not a plain address")
	}
	dir := filepath.Join(m.Dir, to)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	// Written under a temporary name and renamed, so a reader polling the
	// directory never sees half a mail.
	name := filepath.Join(dir, custos.NewID("ml"))
	msg := "To: " + to + "\r\nSubject: " + subject + "\r\n\r\n" + body
	if err := os.WriteFile(name+".tmp", []byte(msg), 0o600); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	if err := os.Rename(name+".tmp", name+".eml"); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	return nil
}

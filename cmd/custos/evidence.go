package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

// runEvidence runs "custos evidence ID": security staff read what the
// canary trap kept of a message. The envelope evidence is printed; the
// raw message (whoever sent it wrote it: links, attachments) goes only to
// the file --raw names, never to the terminal.
func (m *Main) runEvidence(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("evidence", `[--raw FILE.eml] EVIDENCE`, `custos evidence --raw trapped.eml ev_…`)
	raw := fs.String("raw", "", "write the raw message to this new file (mode 0600)")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	ev, err := a.client().Evidence(ctx, pos[0])
	if err != nil {
		return err
	}
	if *raw != "" {
		if err := writeNew(*raw, ev.Raw); err != nil {
			return err
		}
	}
	e := ev.Evidence
	if err := a.printer().one(e, "%s", evidenceText(&e)); err != nil {
		return err
	}
	if *raw != "" && !a.json {
		fmt.Fprintf(m.Stdout, "raw message (%d bytes) written to %s\n", len(ev.Raw), *raw)
	}
	return nil
}

// evidenceText is a message's evidence as lines, the Received chain
// newest first. Header text is the sender's: control characters are
// shown escaped, so a hostile header cannot drive the terminal.
func evidenceText(e *custos.TrapEvidence) string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-12s %s\n", k+":", printable(v))
		}
	}
	line("evidence", e.ID)
	if !e.ReceivedAt.IsZero() {
		line("received at", e.ReceivedAt.Format(time.RFC3339))
	}
	line("remote ip", e.RemoteIP)
	line("helo", e.HELO)
	line("mail from", e.MailFrom)
	line("from", e.From)
	line("subject", e.Subject)
	line("message-id", e.MessageID)
	for i, r := range e.Received {
		line(fmt.Sprintf("received[%d]", i), r)
	}
	fmt.Fprintf(&b, "%-12s %d bytes", "size:", e.Size)
	return b.String()
}

// printable quotes what a terminal would interpret.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0xfffd }) < 0 {
		return s
	}
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}

// writeNew writes data to a file that must not exist yet, readable by
// its owner only.
func writeNew(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	return f.Close()
}

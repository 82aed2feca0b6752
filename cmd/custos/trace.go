package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
	"github.com/custos-dev/custos/relay"
)

// runTrace runs "custos trace EMAIL": is this address one of our canaries,
// and if it is, which export (and who) or which list let it out? With
// --message FILE.eml it traces every recipient a saved message names and
// prints the message's evidence (From, Subject, the Received chain).
func (m *Main) runTrace(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("trace", `EMAIL | --message FILE.eml`, `custos trace found-in-a-leak@example.com`)
	message := fs.String("message", "", "a saved message (.eml, or one mbox message): trace each of its recipients")
	pos, err := fs.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if (*message == "") == (len(pos) == 0) {
		fs.printUsage(m.Stderr)
		return usagef("custos trace: give an address or --message FILE, one of them")
	}
	if *message != "" {
		return m.traceMessage(ctx, a, *message)
	}
	res, err := a.client().Trace(ctx, pos[0])
	if err != nil {
		return err
	}
	return a.printer().one(res, "%s", traceText(res))
}

// traceText is the attribution a trace found, in a sentence.
func traceText(res *custos.TraceResult) string {
	switch res.Kind {
	case custos.TraceExport:
		return fmt.Sprintf("a canary of the export of list %s (tenant %s) made by %s with key %s from %s at %s, request %s",
			res.ListID, res.TenantID, res.Principal, res.KeyID, res.Source, res.ExportedAt.Format(time.RFC3339), res.RequestID)
	case custos.TraceList:
		return fmt.Sprintf("a canary of list %s (tenant %s): the list left custos; its exports and reveals are in the audit log", res.ListID, res.TenantID)
	}
	return "not a custos canary"
}

// tracedMessage is what "custos trace --message --json" prints.
type tracedMessage struct {
	Evidence   custos.TrapEvidence `json:"evidence"`
	Recipients []tracedRecipient   `json:"recipients"`
}

type tracedRecipient struct {
	Address string              `json:"address"`
	Trace   *custos.TraceResult `json:"trace"`
}

// traceMessage traces the recipients of a saved message. An address that
// is not a canary may be a person's (whoever received the mail): it is
// shown masked.
func (m *Main) traceMessage(ctx context.Context, a *api, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	rcpts, ev, err := relay.EvidenceFromMessage(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(rcpts) == 0 {
		return fmt.Errorf("%s names no recipient (Delivered-To, X-Original-To, Envelope-To, To or Cc)", file)
	}
	c := a.client()
	out := tracedMessage{Evidence: ev, Recipients: []tracedRecipient{}}
	for _, r := range rcpts {
		res, err := c.Trace(ctx, r)
		if err != nil {
			return err
		}
		shown := r
		if res.Kind == custos.TraceNone {
			shown = addr.Mask(r)
		}
		out.Recipients = append(out.Recipients, tracedRecipient{Address: shown, Trace: res})
	}
	pr := a.printer()
	if pr.json {
		return pr.one(out, "")
	}
	err = pr.table(out, "RECIPIENT\tATTRIBUTION", func(tw io.Writer) {
		for _, r := range out.Recipients {
			fmt.Fprintf(tw, "%s\t%s\n", printable(r.Address), traceText(r.Trace))
		}
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(m.Stdout, "\nthe message:\n%s\n", evidenceText(&ev))
	return err
}

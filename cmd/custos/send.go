package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/custos-dev/custos"
)

// runSend runs "custos send": one message to contact tokens through the
// egress relay, in requests of at most custos.MaxSendRecipients. Each
// recipient's fate is printed; any refused or deferred makes the exit
// code 3.
func (m *Main) runSend(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("send", `--tenant T [--list L] (--message FILE.eml | --from A --subject S [--text FILE] [--html FILE]) [--to-file FILE] TOKEN…`,
		`custos send --tenant tn_… --list ls_… --from news@acme.example --subject "Hello {{attributes.first_name}}" --text body.txt --to-file tokens.txt`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	list := fs.String("list", "", "every recipient must be in this list")
	message := fs.String("message", "", "a whole RFC 5322 message (placeholders allowed)")
	from := fs.String("from", "", "template: the From address")
	replyTo := fs.String("reply-to", "", "template: the Reply-To address")
	subject := fs.String("subject", "", "template: the subject")
	text := fs.String("text", "", "template: a file with the text body")
	html := fs.String("html", "", "template: a file with the HTML body")
	toFile := fs.String("to-file", "", "a file of contact tokens, one per line (# comments and blank lines skipped)")
	pos, err := fs.parse(args, 0, -1, "tenant")
	if err != nil {
		return err
	}
	req := custos.SendRequest{ListID: *list}
	switch {
	case *message != "" && (*from != "" || *subject != "" || *text != "" || *html != "" || *replyTo != ""):
		return usagef("custos send: give --message or the template flags (--from, --subject, --text, --html), not both")
	case *message != "":
		b, err := os.ReadFile(*message)
		if err != nil {
			return err
		}
		req.Message = string(b)
	case *from == "" || *text == "" && *html == "":
		return usagef("custos send: give --message FILE.eml, or --from with --text, --html or both")
	default:
		t := &custos.MessageTemplate{From: *from, ReplyTo: *replyTo, Subject: *subject}
		for _, p := range []struct {
			file string
			to   *string
		}{{*text, &t.Text}, {*html, &t.HTML}} {
			if p.file != "" {
				b, err := os.ReadFile(p.file)
				if err != nil {
					return err
				}
				*p.to = string(b)
			}
		}
		req.Template = t
	}
	tokens := pos
	if *toFile != "" {
		more, err := readTokens(*toFile)
		if err != nil {
			return err
		}
		tokens = append(tokens, more...)
	}
	if len(tokens) == 0 {
		return usagef("custos send: no recipients: give contact tokens as arguments or --to-file")
	}
	c, pr := a.client(), a.printer()
	all := items[*custos.SendResult]{Items: []*custos.SendResult{}}
	notSent := 0
	for start := 0; start < len(tokens); start += custos.MaxSendRecipients {
		req.Recipients = tokens[start:min(start+custos.MaxSendRecipients, len(tokens))]
		res, err := c.Send(ctx, *tenant, &req)
		if err != nil {
			if start > 0 {
				fmt.Fprintf(m.Stderr, "custos send: %d of %d recipients were submitted before this failure\n", start, len(tokens))
			}
			return err
		}
		all.Items = append(all.Items, res)
		notSent += res.Refused + res.Deferred
		if !pr.json {
			pr.table(res, "TOKEN\tSTATUS\tREASON", func(tw io.Writer) {
				for _, r := range res.Recipients {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Token, r.Status, dash(r.Reason))
				}
			})
			fmt.Fprintf(m.Stdout, "message %s: %d sent, %d refused, %d deferred\n", res.MessageID, res.Sent, res.Refused, res.Deferred)
		}
	}
	if pr.json {
		if err := pr.one(all, ""); err != nil {
			return err
		}
	}
	if notSent > 0 {
		return fmt.Errorf("%d of %d recipients were not sent (refused or deferred; deferred ones may be sent again): %w", notSent, len(tokens), errPartial)
	}
	return nil
}

// readTokens reads contact tokens, one per line.
func readTokens(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return out, sc.Err()
}

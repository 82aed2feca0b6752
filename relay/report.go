package relay

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/custos-dev/custos"
)

// Parsing of inbound mail, which anyone on the internet can send: every
// function here takes hostile bytes, never panics, and allocates no more
// than a small multiple of its input (which the listener's size limit
// bounds). Nothing here logs or returns input text: errors are constants.

const (
	// maxHeaderFields bounds the fields kept of one header block; later
	// ones are read past and dropped.
	maxHeaderFields = 1000
	// maxFieldBytes bounds one kept field value (a longer one is cut).
	maxFieldBytes = 4096
	// maxReceived bounds the Received chain kept as evidence.
	maxReceived = 100
	// maxReportParts bounds the MIME parts of a report looked at.
	maxReportParts = 32
	// maxStatusBytes bounds the delivery-status or feedback-report part
	// read (real ones are a few hundred bytes).
	maxStatusBytes = 256 << 10
	// maxStatusBlocks bounds the per-recipient blocks of one DSN.
	maxStatusBlocks = 1000
	// maxMessageRecipients bounds the addresses taken from a saved
	// message's recipient fields.
	maxMessageRecipients = 1000
)

var errMalformedReport = errors.New("malformed report")

// mailField is one header field: its name as written and its value unfolded,
// as raw bytes (neither decoded nor checked for UTF-8).
type mailField struct {
	name, value string
}

// mailHeader is a parsed header block.
type mailHeader []mailField

// get returns the first value of the field named name (case-insensitive).
func (h mailHeader) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// values returns every value of the field named name, in order.
func (h mailHeader) values(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value)
		}
	}
	return out
}

// mailLine splits the first line off b: the line without its CRLF or LF,
// and the rest after it.
func mailLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		line, rest = b, nil
	} else {
		line, rest = b[:i], b[i+1:]
	}
	return bytes.TrimSuffix(line, []byte{'\r'}), rest
}

func isMailWSP(c byte) bool { return c == ' ' || c == '\t' }

// validFieldName reports whether name is an RFC 5322 field name: printable
// US-ASCII but the colon.
func validFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// parseHeader reads the header block at the start of b (RFC 5322 section
// 2.2): folded lines are unfolded, CRLF and bare LF both end a line. It
// stops at the blank line, which the body follows, or at the first line
// that is neither a field nor a continuation, where the body is taken to
// begin (lenient, as MTAs are). It keeps at most [maxHeaderFields] fields
// of at most [maxFieldBytes] each; the rest is read past, so body is
// still right.
func parseHeader(b []byte) (h mailHeader, body []byte) {
	var cur []byte // the field being read, name and value, unfolded
	flush := func() {
		if cur == nil {
			return
		}
		name, value, _ := bytes.Cut(cur, []byte{':'})
		name = bytes.TrimRight(name, " \t")
		if len(h) < maxHeaderFields {
			h = append(h, mailField{name: string(name), value: string(bytes.Trim(value, " \t"))})
		}
		cur = nil
	}
	for len(b) > 0 {
		line, rest := mailLine(b)
		switch {
		case len(line) == 0:
			flush()
			return h, rest
		case isMailWSP(line[0]):
			if cur == nil {
				// A continuation of nothing: not a header.
				flush()
				return h, b
			}
			if len(cur) < maxFieldBytes {
				cur = append(cur, line[:min(len(line), maxFieldBytes-len(cur))]...)
			}
		default:
			name, _, ok := bytes.Cut(line, []byte{':'})
			if !ok || !validFieldName(bytes.TrimRight(name, " \t")) {
				flush()
				return h, b
			}
			flush()
			cur = append(make([]byte, 0, min(len(line), maxFieldBytes)), line[:min(len(line), maxFieldBytes)]...)
		}
		b = rest
	}
	flush()
	return h, nil
}

// parseFieldBlocks reads a sequence of header-like blocks separated by
// blank lines, as in a message/delivery-status body (RFC 3464: the
// per-message fields, then one block per recipient). Lines that are not
// fields are skipped.
func parseFieldBlocks(b []byte) []mailHeader {
	var blocks []mailHeader
	for len(b) > 0 && len(blocks) < maxStatusBlocks {
		line, rest := mailLine(b)
		if len(bytes.TrimSpace(line)) == 0 {
			b = rest
			continue
		}
		h, body := parseHeader(b)
		if len(h) == 0 {
			// Not a field: skip the line (progress is one line at least).
			b = rest
			continue
		}
		blocks = append(blocks, h)
		b = body
	}
	return blocks
}

// classifyReport says what a message to a bounce address reports:
// [custos.SuppressBounced] for a delivery status notification (RFC 3464:
// multipart/report; report-type=delivery-status) with a recipient whose
// Action is failed and whose Status is permanent (5.x.x);
// [custos.SuppressComplained] for a feedback report (RFC 5965:
// report-type=feedback-report) of a complaint; "" for anything else —
// delays, temporary failures, successes, auto-replies, challenge mails,
// garbage — which changes nothing. Only the machine-readable part is
// read, so words in a human-readable part or in the returned message's
// copy cannot make a report. The error says why a report could not be
// read (its text holds nothing of the input); the reason is then "".
func classifyReport(raw []byte) (reason string, err error) {
	h, body := parseHeader(raw)
	mt, params, err := mime.ParseMediaType(h.get("Content-Type"))
	if err != nil || mt != "multipart/report" {
		return "", nil
	}
	var want func(mt string) bool
	var judge func(blocks []mailHeader) string
	switch strings.ToLower(params["report-type"]) {
	case "delivery-status":
		want = func(mt string) bool { return mt == "message/delivery-status" || mt == "message/global-delivery-status" }
		judge = judgeDeliveryStatus
	case "feedback-report":
		want = func(mt string) bool { return mt == "message/feedback-report" }
		judge = judgeFeedback
	default:
		return "", nil
	}
	boundary := params["boundary"]
	if boundary == "" || len(boundary) > 70 {
		return "", errMalformedReport
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for range maxReportParts {
		p, err := mr.NextPart()
		if err == io.EOF {
			return "", nil
		}
		if err != nil {
			return "", errMalformedReport
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil || !want(pt) {
			continue
		}
		// The multipart reader undoes quoted-printable; base64 is ours.
		var r io.Reader = p
		if strings.EqualFold(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding")), "base64") {
			r = base64.NewDecoder(base64.StdEncoding, p)
		}
		data, err := io.ReadAll(io.LimitReader(r, maxStatusBytes))
		if err != nil {
			return "", errMalformedReport
		}
		// The first machine-readable part is the report.
		return judge(parseFieldBlocks(data)), nil
	}
	return "", errMalformedReport
}

// judgeDeliveryStatus: a DSN suppresses when one of its recipients
// failed permanently (Action: failed, Status: 5.x.x). A failure with a
// temporary status (some MTAs give up on 4.4.7 after days) does not: the
// address may work next time.
func judgeDeliveryStatus(blocks []mailHeader) string {
	for _, b := range blocks {
		action := strings.ToLower(strings.TrimSpace(b.get("Action")))
		// "failed" may carry an RFC 822 comment: "failed (bad mailbox)".
		action, _, _ = strings.Cut(action, " ")
		if action == "failed" && permanentStatus(b.get("Status")) {
			return custos.SuppressBounced
		}
	}
	return ""
}

// permanentStatus reports whether an RFC 3463 status ("5.1.1", maybe
// followed by a comment) is a permanent failure.
func permanentStatus(s string) bool {
	s = strings.TrimSpace(s)
	code, _, _ := strings.Cut(s, " ")
	class, rest, ok := strings.Cut(code, ".")
	if !ok || class != "5" {
		return false
	}
	subject, detail, ok := strings.Cut(rest, ".")
	return ok && asciiDigits(subject, 3) && asciiDigits(detail, 3)
}

// digits reports whether s is 1 to n ASCII digits.
func asciiDigits(s string, n int) bool {
	if len(s) == 0 || len(s) > n {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// judgeFeedback: a feedback report is a complaint unless its type says
// otherwise. "abuse" is the recipient's "this is spam"; "fraud" and
// "virus" are reports about the mail too, and "other" is given the
// benefit of the doubt (suppressing is what protects the recipient).
// "not-spam" takes a complaint back, and "auth-failure" (RFC 6591) is a
// report on the sender's domain authentication, not on the recipient's
// wish: neither suppresses. A report without a Feedback-Type is not ARF.
func judgeFeedback(blocks []mailHeader) string {
	if len(blocks) == 0 {
		return ""
	}
	switch strings.ToLower(strings.TrimSpace(blocks[0].get("Feedback-Type"))) {
	case "abuse", "fraud", "virus", "other":
		return custos.SuppressComplained
	}
	return ""
}

// wordDecoder decodes RFC 2047 encoded words. Charsets the standard
// library does not know (it knows UTF-8, US-ASCII and ISO-8859-1) pass
// their bytes through, and what is not UTF-8 of them is replaced later:
// evidence is for reading, the sealed message keeps the exact bytes.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(_ string, in io.Reader) (io.Reader, error) { return in, nil }}

// headerText makes a header value fit for evidence: RFC 2047 encoded
// words decoded when decode is set (a malformed one stays as written),
// invalid UTF-8 and control characters replaced, cut to [maxFieldBytes].
func headerText(v string, decode bool) string {
	if decode {
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
	}
	v = strings.ToValidUTF8(v, "\uFFFD")
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, v)
	v = strings.TrimSpace(v)
	if len(v) > maxFieldBytes {
		cut := maxFieldBytes
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	return v
}

// evidenceFromHeader fills the message's side of a trap's evidence from
// its header: From and Subject (decoded), Message-ID, and the Received
// chain as written, newest first (each MTA prepends its own).
func evidenceFromHeader(h mailHeader, ev *custos.TrapEvidence) {
	ev.From = headerText(h.get("From"), true)
	ev.Subject = headerText(h.get("Subject"), true)
	ev.MessageID = headerText(h.get("Message-Id"), false)
	ev.Received = nil
	for _, v := range h.values("Received") {
		if len(ev.Received) == maxReceived {
			break
		}
		ev.Received = append(ev.Received, headerText(v, false))
	}
}

// EvidenceFromMessage reads a saved message (an .eml file, or one message
// of an mbox with its "From " line) for `custos trace --message`: the
// recipient addresses it names — Delivered-To, X-Original-To,
// Envelope-To, To and Cc, in that order, each once (compared without
// case), at most 1000 — and the evidence its header holds: From, Subject,
// Message-ID, the Received chain newest first, the envelope sender from
// Return-Path (as MailFrom) and the message's size. The listener-side
// fields (ID, ReceivedAt, RemoteIP, HELO) are the caller's to fill, or
// stay empty. A file with no header fields is EINVALID. Input is
// untrusted: nothing of it appears in an error.
func EvidenceFromMessage(raw []byte) (rcpts []string, ev custos.TrapEvidence, err error) {
	b := raw
	if bytes.HasPrefix(b, []byte("From ")) {
		_, b = mailLine(b)
	}
	h, _ := parseHeader(b)
	if len(h) == 0 {
		return nil, ev, custos.Errorf(custos.EINVALID, "not a mail message: no header fields")
	}
	evidenceFromHeader(h, &ev)
	ev.Size = len(raw)
	ev.MailFrom = strings.Trim(headerText(h.get("Return-Path"), false), "<>")
	seen := map[string]bool{}
	for _, name := range []string{"Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc"} {
		for _, v := range h.values(name) {
			for _, a := range headerAddresses(v) {
				k := strings.ToLower(a)
				if seen[k] || len(rcpts) == maxMessageRecipients {
					continue
				}
				seen[k] = true
				rcpts = append(rcpts, a)
			}
		}
	}
	return rcpts, ev, nil
}

// headerAddresses returns the addr-specs of an address-list field value.
// A value net/mail cannot parse (common in spam: bare lists, stray
// brackets, raw 8-bit names) falls back to a lenient scan for words with
// an @, with brackets and quotes stripped.
func headerAddresses(v string) []string {
	v = headerText(v, false)
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	for _, w := range strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '<' || r == '>' || r == '"' || r == '(' || r == ')'
	}) {
		local, domain, ok := strings.Cut(w, "@")
		if ok && local != "" && domain != "" && !strings.Contains(domain, "@") {
			out = append(out, w)
		}
	}
	return out
}

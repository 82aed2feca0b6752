package relay

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custos-dev/custos"
)

// addInboundSeeds seeds f with every message in testdata/inbound and a few
// hostile shapes the fixtures do not have.
func addInboundSeeds(f *testing.F) {
	f.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "inbound", "*.eml"))
	if err != nil || len(names) == 0 {
		f.Fatalf("no seeds in testdata/inbound (%v)", err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(dsn("Action: failed\nStatus: 5.1.1\n"))
	f.Add(arf("abuse"))
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=\"\"\n\n--\n"))
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=a\n\n--a\nContent-Type: multipart/report; report-type=delivery-status; boundary=a\n\n--a\n--a--\n"))
	f.Add([]byte("Content-Type: multipart/report;;;;; report-type==; boundary*0=a; boundary*1=b\n\n"))
	f.Add([]byte(" \n\t\n\r\n:\n:::\n"))
	f.Add([]byte("Subject: =?utf-8?q?=FF=FE?= =?\n\n"))
	f.Add([]byte("From \nTo: a@b, <<c@d>>, \"e@f\n"))
}

// FuzzClassifyReport: no input makes classifyReport panic, answer a
// reason that is not a suppression reason, or return an error carrying
// input.
func FuzzClassifyReport(f *testing.F) {
	addInboundSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		reason, err := classifyReport(raw)
		switch reason {
		case "", custos.SuppressBounced, custos.SuppressComplained:
		default:
			t.Fatalf("reason %q", reason)
		}
		if err != nil && (err != errMalformedReport || reason != "") {
			t.Fatalf("%q with error %v", reason, err)
		}
	})
}

// FuzzEvidenceFromMessage: the header parser and the evidence built on it
// never panic, find the body inside the input, and keep only bounded,
// valid UTF-8 text without control characters.
func FuzzEvidenceFromMessage(f *testing.F) {
	addInboundSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, body := parseHeader(raw)
		if len(h) > maxHeaderFields || !bytes.HasSuffix(raw, body) {
			t.Fatalf("%d fields, body not a suffix of the input", len(h))
		}
		for _, fl := range h {
			if len(fl.name)+1+len(fl.value) > maxFieldBytes {
				t.Fatalf("field of %d bytes kept", len(fl.name)+1+len(fl.value))
			}
		}
		rcpts, ev, err := EvidenceFromMessage(raw)
		if err != nil {
			if custos.ErrorCode(err) != custos.EINVALID || rcpts != nil {
				t.Fatalf("error %v with %d recipients", err, len(rcpts))
			}
			return
		}
		if len(rcpts) > maxMessageRecipients || len(ev.Received) > maxReceived || ev.Size != len(raw) {
			t.Fatalf("%d recipients, %d received, size %d of %d", len(rcpts), len(ev.Received), ev.Size, len(raw))
		}
		texts := append([]string{ev.From, ev.Subject, ev.MessageID, ev.MailFrom}, ev.Received...)
		for _, r := range rcpts {
			if !strings.Contains(r, "@") {
				t.Fatalf("recipient without @: %q", r)
			}
			texts = append(texts, r)
		}
		for _, s := range texts {
			if !utf8.ValidString(s) || len(s) > maxFieldBytes || strings.ContainsAny(s, "\x00\r\n\x1b") {
				t.Fatalf("unsafe evidence text %q", s)
			}
		}
	})
}

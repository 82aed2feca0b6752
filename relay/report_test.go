package relay

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos"
)

// inboundFixture reads testdata/inbound/name.
func inboundFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "inbound", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dsn builds a delivery status notification whose machine-readable part
// is status (LF line ends, as a test writes them).
func dsn(status string) []byte {
	return []byte("From: MAILER-DAEMON@mx.example.org\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n" +
		"--b\nContent-Type: text/plain\n\nAction: failed\nStatus: 5.1.1\n\n" +
		"--b\nContent-Type: message/delivery-status\n\n" + status + "\n" +
		"--b--\n")
}

// arf builds a feedback report of type typ.
func arf(typ string) []byte {
	return []byte("From: feedback@example.com\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=fb\n\n" +
		"--fb\nContent-Type: text/plain\n\nA report.\n" +
		"--fb\nContent-Type: message/feedback-report\n\nFeedback-Type: " + typ + "\nUser-Agent: T/1\nVersion: 1\n\n" +
		"--fb--\n")
}

func TestClassifyReport(t *testing.T) {
	const perMessage = "Reporting-MTA: dns; mx.example.org\n\n"
	base64Status := base64.StdEncoding.EncodeToString([]byte(perMessage + "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.2.1\n"))
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"postfix hard bounce", inboundFixture(t, "postfix-dsn.eml"), custos.SuppressBounced},
		{"exchange NDR, CRLF, 5.1.10", inboundFixture(t, "exchange-dsn.eml"), custos.SuppressBounced},
		{"postfix delay", inboundFixture(t, "postfix-delay.eml"), ""},
		{"ARF abuse", inboundFixture(t, "arf-abuse.eml"), custos.SuppressComplained},
		{"out of office with report-like text", inboundFixture(t, "autoreply.eml"), ""},
		{"malformed MIME", inboundFixture(t, "malformed.eml"), ""},
		{"binary garbage", inboundFixture(t, "malformed-binary.eml"), ""},

		{"failed, permanent", dsn(perMessage + "Action: failed\nStatus: 5.1.1\n"), custos.SuppressBounced},
		{"failed with comments", dsn(perMessage + "Action: failed (mailbox gone)\nStatus: 5.1.1 (user unknown)\n"), custos.SuppressBounced},
		{"case and space", dsn(perMessage + "ACTION:   Failed\nstatus:5.7.1\n"), custos.SuppressBounced},
		{"second of two recipients failed", dsn(perMessage + "Action: delivered\nStatus: 2.0.0\n\nAction: failed\nStatus: 5.1.2\n"), custos.SuppressBounced},
		{"failed but temporary (expired)", dsn(perMessage + "Action: failed\nStatus: 4.4.7\n"), ""},
		{"failed without status", dsn(perMessage + "Action: failed\n"), ""},
		{"failed, status not a code", dsn(perMessage + "Action: failed\nStatus: 5.x.1\n"), ""},
		{"failed, status detail too long", dsn(perMessage + "Action: failed\nStatus: 5.1.1000\n"), ""},
		{"delayed, permanent-looking status", dsn(perMessage + "Action: delayed\nStatus: 5.0.0\n"), ""},
		{"delivered", dsn(perMessage + "Action: delivered\nStatus: 2.0.0\n"), ""},
		{"relayed", dsn(perMessage + "Action: relayed\nStatus: 2.0.0\n"), ""},
		{"base64 status part", []byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
			"--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n" + base64Status + "\n--b--\n"), custos.SuppressBounced},
		{"quoted-printable status part", []byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
			"--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: quoted-printable\n\nAction: fai=\nled\nStatus: 5.1=2E1\n--b--\n"), custos.SuppressBounced},
		{"global DSN (RFC 6533)", []byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
			"--b\nContent-Type: message/global-delivery-status\n\nAction: failed\nStatus: 5.1.1\n--b--\n"), custos.SuppressBounced},
		{"report fields only in the human part", []byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
			"--b\nContent-Type: text/plain\n\nAction: failed\nStatus: 5.1.1\n--b--\n"), ""},
		{"report fields only in the returned headers", []byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
			"--b\nContent-Type: text/rfc822-headers\n\nAction: failed\nStatus: 5.1.1\n--b--\n"), ""},
		{"delivery-status part in a report of another type", []byte("Content-Type: multipart/report; report-type=disposition-notification; boundary=b\n\n" +
			"--b\nContent-Type: message/delivery-status\n\nAction: failed\nStatus: 5.1.1\n--b--\n"), ""},
		{"not multipart/report", []byte("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nAction: failed\nStatus: 5.1.1\n--b--\n"), ""},
		{"no header", []byte("\nAction: failed\nStatus: 5.1.1\n"), ""},
		{"empty", nil, ""},

		{"ARF fraud", arf("fraud"), custos.SuppressComplained},
		{"ARF other", arf("Other"), custos.SuppressComplained},
		{"ARF not-spam", arf("not-spam"), ""},
		{"ARF auth-failure", arf("auth-failure"), ""},
		{"ARF without a type", arf(""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := classifyReport(tt.raw)
			if got != tt.want {
				t.Errorf("classifyReport = %q (%v), want %q", got, err, tt.want)
			}
			if err != nil && err != errMalformedReport {
				t.Errorf("error %v, want only errMalformedReport (nothing of the input)", err)
			}
		})
	}
}

// TestClassifyReportMalformedSaysSo: a report the listener cannot read is
// an error (which it logs), not a silent "no change".
func TestClassifyReportMalformedSaysSo(t *testing.T) {
	for name, raw := range map[string][]byte{
		"no boundary":      []byte("Content-Type: multipart/report; report-type=delivery-status\n\n--b\n"),
		"unclosed":         []byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: text/plain\n\nsome text with no end"),
		"junk after parts": inboundFixture(t, "malformed.eml"),
	} {
		if got, err := classifyReport(raw); got != "" || err != errMalformedReport {
			t.Errorf("%s: %q, %v; want no reason and errMalformedReport", name, got, err)
		}
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want mailHeader
		body string
	}{
		{"LF", "A: 1\nB: two words\n\nbody\n", mailHeader{{"A", "1"}, {"B", "two words"}}, "body\n"},
		{"CRLF", "A: 1\r\nB: 2\r\n\r\nbody\r\n", mailHeader{{"A", "1"}, {"B", "2"}}, "body\r\n"},
		{"folded", "Subject: one\n two\n\tthree\nX: y\n\n", mailHeader{{"Subject", "one two\tthree"}, {"X", "y"}}, ""},
		{"space before colon", "Subject : hi\n\n", mailHeader{{"Subject", "hi"}}, ""},
		{"empty value", "X-Ndr:\nY: 1\n\n", mailHeader{{"X-Ndr", ""}, {"Y", "1"}}, ""},
		{"no blank line: a non-field line starts the body", "A: 1\nthis is text\nmore\n", mailHeader{{"A", "1"}}, "this is text\nmore\n"},
		{"continuation of nothing", " A: 1\n\n", nil, " A: 1\n\n"},
		{"bad name", "A B: 1\n\n", nil, "A B: 1\n\n"},
		{"header only, no newline", "A: 1", mailHeader{{"A", "1"}}, ""},
		{"8-bit value kept as bytes", "S: \xe9t\xe9\n\n", mailHeader{{"S", "\xe9t\xe9"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body := parseHeader([]byte(tt.in))
			if diff := cmp.Diff(tt.want, h, cmp.AllowUnexported(mailField{})); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

// TestParseHeaderBounds: a header of many fields, or of one huge folded
// field, keeps at most maxHeaderFields of at most maxFieldBytes, and the
// body is still found after it.
func TestParseHeaderBounds(t *testing.T) {
	var b bytes.Buffer
	for range 3 * maxHeaderFields {
		b.WriteString("X-Junk: aaaaaaaa\n")
	}
	b.WriteString("Subject: " + strings.Repeat("s", 3*maxFieldBytes) + "\n")
	for range 1000 {
		b.WriteString("\t" + strings.Repeat("f", 100) + "\n")
	}
	b.WriteString("\nthe body\n")
	h, body := parseHeader(b.Bytes())
	if len(h) != maxHeaderFields {
		t.Errorf("%d fields kept, want %d", len(h), maxHeaderFields)
	}
	if string(body) != "the body\n" {
		t.Errorf("body %q, want the body after the huge header", body)
	}
	b.Reset()
	b.WriteString("Subject: " + strings.Repeat("s", 3*maxFieldBytes) + "\n")
	for range 1000 {
		b.WriteString("\t" + strings.Repeat("f", 100) + "\n")
	}
	b.WriteString("\nbody")
	h, body = parseHeader(b.Bytes())
	if len(h) != 1 || len(h[0].value) > maxFieldBytes || !strings.HasPrefix(h[0].value, "sss") {
		t.Errorf("huge field kept as %d fields, first of %d bytes; want one of at most %d", len(h), len(h[0].value), maxFieldBytes)
	}
	if string(body) != "body" {
		t.Errorf("body %q after a huge field", body)
	}
}

func TestEvidenceFromMessage(t *testing.T) {
	raw := bytes.Replace(inboundFixture(t, "phish.eml"), []byte("To: CANARY"), []byte("To: Jane <Jane.Doe4411@example.net>, jane.doe4411@EXAMPLE.net"), 1)
	raw = append([]byte("Delivered-To: jane.doe4411@example.net\n"), raw...)
	rcpts, ev, err := EvidenceFromMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Delivered-To first; To's two spellings of it are the same address;
	// Cc's value net/mail refuses is scanned leniently.
	if diff := cmp.Diff([]string{"jane.doe4411@example.net", "other@example.com"}, rcpts); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}
	want := custos.TrapEvidence{
		From: "Sécurité Banque <security@bank-login.example>",
		// The unknown charset's word decodes as its bytes; the raw 8-bit
		// bytes are not UTF-8 and are replaced.
		Subject:   "Urgent: vérifiez votre compteabc \uFFFDt\uFFFD",
		MessageID: "<phish-20250308031240.4711@bulk7.mailer.example>",
		Received: []string{
			"from bulk7.mailer.example (bulk7.mailer.example [203.0.113.99])\tby mx.canary.example (Postfix) with ESMTP id 91AB22C3;\tSat, 8 Mar 2025 03:12:45 +0000 (UTC)",
			"from [10.0.0.5] (unknown [198.18.4.4])\tby bulk7.mailer.example with SMTP; Sat, 8 Mar 2025 03:12:44 +0000",
			"from localhost by workstation-17; Sat, 8 Mar 2025 03:12:40 +0000",
		},
		Size: len(raw),
	}
	// Tabs of folding are control characters to headerText: spaces.
	for i, r := range want.Received {
		want.Received[i] = strings.ReplaceAll(r, "\t", " ")
	}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("evidence (-want +got):\n%s", diff)
	}

	// An mbox message: its "From " line is skipped, Return-Path is the
	// envelope sender.
	mbox := "From MAILER-DAEMON Sat Mar  8 03:12:45 2025\nReturn-Path: <bulk@mailer.example>\nX-Original-To: c1@example.net\nTo: undisclosed-recipients:;\n\nhi\n"
	rcpts, ev, err = EvidenceFromMessage([]byte(mbox))
	if err != nil || !cmp.Equal(rcpts, []string{"c1@example.net"}) || ev.MailFrom != "bulk@mailer.example" {
		t.Errorf("mbox message: %v, %+v, %v", rcpts, ev, err)
	}

	for _, junk := range []string{"", "just text, no header\n", "\n\nbody"} {
		if _, _, err := EvidenceFromMessage([]byte(junk)); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("EvidenceFromMessage(%q): %v, want EINVALID", junk, err)
		}
	}
}

// TestHeaderTextIsSafe: what goes into evidence is valid UTF-8 without
// control characters and bounded, whatever the header held.
func TestHeaderTextIsSafe(t *testing.T) {
	for _, in := range []string{"\xff\xfe\x00\x1b[31m", "=?utf-8?b?AAEC?=", strings.Repeat("é", maxFieldBytes), "a\r\nInjected: yes"} {
		out := headerText(in, true)
		if !utf8.ValidString(out) || len(out) > maxFieldBytes || strings.ContainsAny(out, "\x00\x1b\r\n") {
			t.Errorf("headerText(%q) = %q", in, out)
		}
	}
}

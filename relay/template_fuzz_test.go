package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/custos-dev/custos"
)

// FuzzTemplate parses a hostile message and renders it with a hostile
// attribute value: never a panic, and whatever renders re-parses with
// go-message, with exactly one To (the recipient's), no Cc or Bcc, the
// template's header fields and no others, and as many MIME leaves as the
// template had (no value ends or adds a part).
func FuzzTemplate(f *testing.F) {
	raw, _ := mixedMessage(f)
	f.Add([]byte(raw), "Jane")
	f.Add([]byte(raw), "x\r\n--outer\r\nContent-Type: text/html\r\n\r\n<b>")
	f.Add([]byte(crlfs("From: {{attributes.v}} <a@b.example>\nSubject: {{ attributes.v }}\nX-A: {{token}}\nTo: x@y.example\nBcc: z@y.example\n\nHi {{attributes.v}} {{email}}")), "x\r\nBcc: evil@x.example")
	f.Add([]byte(crlfs("From: a@b.example\nContent-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n<p>=E9 {{attributes.v}}</p>")), "Zoë & <co>")
	f.Add([]byte(crlfs("From: a@b.example\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nSGkge3thdHRyaWJ1dGVzLnZ9fQ==")), "\x00\x7f\u2028")
	f.Add([]byte(deep(5)), "--ba\n--bb--")
	f.Add([]byte("From: a@b.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\n{{attributes.v}}\n--b--\n"), "\n--b\n")
	f.Add([]byte("Subject: {{unknown}}\r\n\r\n"), "")
	f.Fuzz(func(t *testing.T, raw []byte, v string) {
		tp, err := ParseTemplate(raw)
		if err != nil {
			if ce, ok := errors.AsType[*custos.Error](err); !ok || ce.Code != custos.EINVALID {
				t.Fatalf("parse error %v is not EINVALID", err)
			}
			return
		}
		attrs, _ := json.Marshal(map[string]string{"v": v})
		out, err := tp.Render(testContact(string(attrs)), "ms_1.0@relay.example")
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		e, err := message.Read(bytes.NewReader(out))
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			t.Fatalf("rendered message does not parse: %v\n%q", err, out)
		}
		if got := e.Header.Values("To"); len(got) != 1 || got[0] != "<"+testAddr+">" {
			t.Fatalf("To = %q, want one, the recipient", got)
		}
		if e.Header.Has("Cc") || e.Header.Has("Bcc") {
			t.Fatal("Cc or Bcc in the rendered message")
		}
		if got, want := fieldKeys(t, out), fieldKeys(t, crlf(raw)); !equalKeys(got, want) {
			t.Fatalf("header fields %q, want the template's %q", got, want)
		}
		if n, tn := len(e.Header.Values("Content-Type")), len(fieldsNamed(crlf(raw), "Content-Type")); n > max(tn, 1) {
			t.Fatalf("%d Content-Type fields, the template has %d", n, tn)
		}
		if got, want := leaves(t, out), leaves(t, crlf(raw)); got != want {
			t.Fatalf("%d MIME leaves rendered, the template has %d\n%q", got, want, out)
		}
	})
}

// fieldKeys returns a message's header field names, without those Render
// sets, drops or may add (Content-Type, Content-Transfer-Encoding).
func fieldKeys(t *testing.T, raw []byte) []string {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read header: %v", err)
	}
	var keys []string
	for f := h.Fields(); f.Next(); {
		if k := f.Key(); !perMessage[k] && k != "Mime-Version" && k != "Content-Transfer-Encoding" && k != "Content-Type" {
			keys = append(keys, k)
		}
	}
	return keys
}

func fieldsNamed(raw []byte, k string) []string {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	return h.Values(k)
}

func equalKeys(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// leaves counts a message's MIME leaves as go-message walks them.
func leaves(t *testing.T, raw []byte) int {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		t.Fatalf("read: %v", err)
	}
	n := 0
	e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil {
			n = -1000 // a structure error: counted so it cannot match a good one
			return err
		}
		if mt, _, _ := part.Header.ContentType(); !strings.HasPrefix(mt, "multipart/") {
			n++
		}
		return nil
	})
	return n
}

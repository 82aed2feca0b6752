package relay

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos"
)

const testAddr = "jane.doe@example.org"

func testContact(attrs string) *custos.Contact {
	c := &custos.Contact{Email: testAddr, Token: "ct_0123456789abcdef"}
	if attrs != "" {
		c.Attributes = json.RawMessage(attrs)
	}
	return c
}

// crlfs writes a test message with LF line breaks as the CRLF it is on
// the wire.
func crlfs(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func mustParse(t testing.TB, raw string) *Template {
	t.Helper()
	tp, err := ParseTemplate([]byte(raw))
	if err != nil {
		t.Fatalf("ParseTemplate: %v", err)
	}
	return tp
}

func mustRender(t testing.TB, tp *Template, c *custos.Contact) []byte {
	t.Helper()
	out, err := tp.Render(c, "ms_1.0@relay.example")
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out
}

// rendered is a rendered message as a mail reader sees it.
type rendered struct {
	header message.Header
	parts  []renderedPart // the leaves, in order
}

type renderedPart struct {
	mediaType string
	header    message.Header
	text      string // decoded (transfer encoding and charset)
}

// read parses a rendered message with go-message, decoding every leaf.
func read(t testing.TB, out []byte) rendered {
	t.Helper()
	e, err := message.Read(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("rendered message does not parse: %v\n%s", err, out)
	}
	r := rendered{header: e.Header}
	err = e.Walk(func(path []int, part *message.Entity, err error) error {
		if err != nil {
			return err
		}
		mt, _, _ := part.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		b, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		r.parts = append(r.parts, renderedPart{mediaType: mt, header: part.Header, text: string(b)})
		return nil
	})
	if err != nil {
		t.Fatalf("walk rendered message: %v\n%s", err, out)
	}
	return r
}

func TestRenderPlaceholders(t *testing.T) {
	attrs := `{"first_name":"Jane","n":42,"x":-1.5e3,"vip":true,"off":false,"none":null,"city":"Zürich","html":"<b>&'\"","multi":"a\nb\r\nc"}`
	tests := []struct {
		name, tmpl string
		html       bool
		want       string
	}{
		{"email", "to {{email}}.", false, "to " + testAddr + "."},
		{"token", "t={{token}}", false, "t=ct_0123456789abcdef"},
		{"string attribute", "Hi {{attributes.first_name}}!", false, "Hi Jane!"},
		{"number", "{{attributes.n}} {{attributes.x}}", false, "42 -1.5e3"},
		{"booleans", "{{attributes.vip}}/{{attributes.off}}", false, "true/false"},
		{"null is empty", "[{{attributes.none}}]", false, "[]"},
		{"missing is empty", "[{{attributes.nope}}]", false, "[]"},
		{"spaces inside braces", "{{ email }}|{{\tattributes.first_name  }}", false, testAddr + "|Jane"},
		{"repeated", "{{token}}{{token}}", false, "ct_0123456789abcdefct_0123456789abcdef"},
		{"non-ASCII value", "{{attributes.city}}", false, "Zürich"},
		{"text is not escaped", "{{attributes.html}}", false, `<b>&'"`},
		{"html is escaped", "<p>{{attributes.html}}</p>", true, "<p>&lt;b&gt;&amp;&#39;&#34;</p>"},
		{"line breaks become CRLF", "{{attributes.multi}}", false, "a\r\nb\r\nc"},
		{"triple braces", "{{{email}}}", false, "{" + testAddr + "}"},
		{"unclosed braces are text", "a {{ b", false, "a {{ b"},
		{"single braces are text", "{email}", false, "{email}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := "text/plain"
			if tt.html {
				ct = "text/html"
			}
			raw := crlfs("From: a@vendor.example\nSubject: s\nContent-Type: "+ct+"; charset=utf-8\n\n") + tt.tmpl
			r := read(t, mustRender(t, mustParse(t, raw), testContact(attrs)))
			if len(r.parts) != 1 {
				t.Fatalf("got %d parts, want 1", len(r.parts))
			}
			if diff := cmp.Diff(tt.want, r.parts[0].text); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderNoAttributes(t *testing.T) {
	tp := mustParse(t, crlfs("From: a@vendor.example\n\nHi {{attributes.first_name}}, {{token}}"))
	r := read(t, mustRender(t, tp, testContact("")))
	if got, want := r.parts[0].text, "Hi , ct_0123456789abcdef"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestRenderHeaders(t *testing.T) {
	raw := crlfs(`From: "{{attributes.company}} News" <news@vendor.example>
Reply-To: {{ attributes.rep }} <help@vendor.example>, other@vendor.example
Subject: Hello {{attributes.first_name}}
X-Campaign: c-{{token}}
List-Unsubscribe: <https://vendor.example/u/{{token}}>
Content-Type: text/plain

body
`)
	out := mustRender(t, mustParse(t, raw), testContact(`{"company":"Acme, Inc. <x>","rep":"Ann","first_name":"Jane"}`))
	h := mail.Header{Header: read(t, out).header}
	from, err := h.AddressList("From")
	if err != nil {
		t.Fatalf("From: %v", err)
	}
	if diff := cmp.Diff([]*mail.Address{{Name: "Acme, Inc. <x> News", Address: "news@vendor.example"}}, from); diff != "" {
		t.Errorf("From (-want +got):\n%s", diff)
	}
	rt, err := h.AddressList("Reply-To")
	if err != nil {
		t.Fatalf("Reply-To: %v", err)
	}
	if diff := cmp.Diff([]*mail.Address{{Name: "Ann", Address: "help@vendor.example"}, {Address: "other@vendor.example"}}, rt); diff != "" {
		t.Errorf("Reply-To (-want +got):\n%s", diff)
	}
	for k, want := range map[string]string{
		"Subject":          "Hello Jane",
		"X-Campaign":       "c-ct_0123456789abcdef",
		"List-Unsubscribe": "<https://vendor.example/u/ct_0123456789abcdef>",
	} {
		if got, _ := h.Text(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestRenderNonASCIISubject(t *testing.T) {
	long := strings.Repeat("Grüße aus Köln ", 20)
	tests := []struct{ name, subject, attrs, want string }{
		{"value", "Hallo {{attributes.name}}", `{"name":"Jürgen"}`, "Hallo Jürgen"},
		{"literal", "Grüße, {{attributes.name}}", `{"name":"Jane"}`, "Grüße, Jane"},
		{"encoded word in the template", "=?utf-8?q?Gr=C3=BC=C3=9Fe_{{attributes.name}}?=", `{"name":"Jane"}`, "Grüße Jane"},
		{"long", "{{attributes.name}}", `{"name":"` + long + `"}`, strings.TrimSpace(long)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustRender(t, mustParse(t, crlfs("From: a@vendor.example\nSubject: "+tt.subject+"\n\nbody")), testContact(tt.attrs))
			head, _, _ := bytes.Cut(out, []byte("\r\n\r\n"))
			for _, line := range strings.Split(string(head), "\r\n") {
				if hasNonASCII(line) {
					t.Errorf("header line is not ASCII: %q", line)
				}
				if len(line) > 78 {
					t.Errorf("header line longer than 78: %q", line)
				}
			}
			h := mail.Header{Header: read(t, out).header}
			if got, _ := h.Subject(); got != tt.want {
				t.Errorf("Subject = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRenderHeaderInjection: no attribute value can add, split or end a
// header field, wherever its placeholder sits.
func TestRenderHeaderInjection(t *testing.T) {
	raw := crlfs(`From: {{attributes.v}} <news@vendor.example>
Reply-To: "{{attributes.v}}" <help@vendor.example>
Subject: Hi {{attributes.v}}
X-Note: {{attributes.v}}
List-Id: {{attributes.v}} <list.vendor.example>
Content-Type: text/plain

Hi {{attributes.v}}
`)
	tp := mustParse(t, raw)
	for _, v := range []string{
		"x\r\nBcc: x@evil.example",
		"x\nBcc: x@evil.example",
		"x\rBcc: x@evil.example",
		"x\r\n\r\nbody-start",
		"x\u2028Bcc: x@evil.example\u0085Cc: y@evil.example",
		"\r\n Bcc: folded@evil.example",
		"x\x00\x1b\x7f",
		"a@evil.example, b@evil.example",
		"\"<x@evil.example>,",
		"=?utf-8?q?=0D=0ABcc:_x@evil.example?=",
		"Jürgen\r\nBcc: x@evil.example",
	} {
		attrs, _ := json.Marshal(map[string]string{"v": v})
		out := mustRender(t, tp, testContact(string(attrs)))
		head, _, ok := bytes.Cut(out, []byte("\r\n\r\n"))
		if !ok {
			t.Fatalf("%q: no end of header", v)
		}
		var names []string
		for _, line := range strings.Split(string(head), "\r\n") {
			if line == "" || line[0] == ' ' || line[0] == '\t' {
				continue
			}
			name, _, _ := strings.Cut(line, ":")
			names = append(names, name)
		}
		want := []string{"From", "Reply-To", "Subject", "X-Note", "List-Id", "Content-Type", "Content-Transfer-Encoding", "MIME-Version", "To", "Message-ID"}
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("value %q: header fields (-want +got):\n%s\n%s", v, diff, out)
		}
		if bytes.ContainsAny(bytes.ReplaceAll(head, []byte("\r\n"), nil), "\r\n\x00") {
			t.Errorf("value %q: a bare CR, LF or NUL in the header", v)
		}
		h := mail.Header{Header: read(t, out).header}
		for _, k := range []string{"From", "Reply-To"} {
			list, err := h.AddressList(k)
			if err != nil || len(list) != map[string]int{"From": 1, "Reply-To": 1}[k] {
				t.Errorf("value %q: %s = %v (%v), want one address", v, k, list, err)
			}
		}
		if to, _ := h.AddressList("To"); len(to) != 1 || to[0].Address != testAddr {
			t.Errorf("value %q: To = %v", v, to)
		}
	}
}

func TestRenderStripsRecipients(t *testing.T) {
	raw := crlfs(`From: news@vendor.example
To: someone@else.example,
 another@else.example
CC: cc@else.example
Bcc: hidden@else.example
Resent-To: r@else.example
Message-ID: <old@vendor.example>
Subject: s

body {{token}}
`)
	out := mustRender(t, mustParse(t, raw), testContact(""))
	for _, s := range []string{"else.example", "old@vendor"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("rendered message still holds %q:\n%s", s, out)
		}
	}
	h := read(t, out).header
	if got := h.Values("To"); len(got) != 1 || got[0] != "<"+testAddr+">" {
		t.Errorf("To = %q, want exactly <%s>", got, testAddr)
	}
	for _, k := range []string{"Cc", "Bcc", "Resent-To"} {
		if h.Has(k) {
			t.Errorf("%s kept", k)
		}
	}
	if got := h.Values("Message-Id"); len(got) != 1 || got[0] != "<ms_1.0@relay.example>" {
		t.Errorf("Message-ID = %q", got)
	}
}

func TestRenderEncodings(t *testing.T) {
	qp := func(s string) string {
		var b bytes.Buffer
		w := quotedprintable.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	b64 := func(s string) string {
		e := base64.StdEncoding.EncodeToString([]byte(s))
		var b strings.Builder
		for len(e) > 76 {
			b.WriteString(e[:76] + "\r\n")
			e = e[76:]
		}
		return b.String() + e
	}
	long := strings.Repeat("Grüße {{attributes.name}}, ", 40) // long lines: soft breaks in QP
	tests := []struct {
		name, ct, cte, body string
		attrs               string
		want, wantCTE       string
	}{
		{"qp", "text/plain; charset=utf-8", "quoted-printable", qp(long), `{"name":"Zoë"}`, strings.ReplaceAll(long, "{{attributes.name}}", "Zoë"), "quoted-printable"},
		{"qp placeholder split by a soft break", "text/plain; charset=utf-8", "quoted-printable", "Hi {{attri=\r\nbutes.name}}=3D", `{"name":"Zoë"}`, "Hi Zoë=", "quoted-printable"},
		{"base64", "text/plain; charset=utf-8", "base64", b64(long), `{"name":"Zoë"}`, strings.ReplaceAll(long, "{{attributes.name}}", "Zoë"), "base64"},
		{"base64 html", "text/html; charset=utf-8", "base64", b64("<p>{{attributes.name}}</p>"), `{"name":"<Zoë>"}`, "<p>&lt;Zoë&gt;</p>", "base64"},
		{"7bit stays 7bit", "text/plain", "7bit", "Hi {{attributes.name}}", `{"name":"Zoe"}`, "Hi Zoe", "7bit"},
		{"7bit with a non-ASCII value becomes qp", "text/plain", "7bit", "Hi {{attributes.name}}", `{"name":"Zoë"}`, "Hi Zoë", "quoted-printable"},
		{"8bit becomes qp", "text/plain; charset=utf-8", "8bit", "Grüße {{attributes.name}}", `{"name":"Zoe"}`, "Grüße Zoe", "quoted-printable"},
		{"no encoding, long value line", "text/plain", "", "{{attributes.name}}", `{"name":"` + strings.Repeat("z", 2000) + `"}`, strings.Repeat("z", 2000), "quoted-printable"},
		{"latin-1 to utf-8", "text/plain; charset=iso-8859-1", "quoted-printable", "Gr=FC=DFe {{attributes.name}}", `{"name":"Zoë"}`, "Grüße Zoë", "quoted-printable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "From: a@vendor.example\r\nContent-Type: " + tt.ct + "\r\n"
			if tt.cte != "" {
				raw += "Content-Transfer-Encoding: " + tt.cte + "\r\n"
			}
			raw += "\r\n" + tt.body
			out := mustRender(t, mustParse(t, raw), testContact(tt.attrs))
			r := read(t, out)
			if diff := cmp.Diff(tt.want, r.parts[0].text); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if got := r.header.Values("Content-Transfer-Encoding"); len(got) != 1 || got[0] != tt.wantCTE {
				t.Errorf("Content-Transfer-Encoding = %q, want %q", got, tt.wantCTE)
			}
			if _, ps, _ := r.header.ContentType(); ps["charset"] != "utf-8" {
				t.Errorf("charset = %q, want utf-8", ps["charset"])
			}
			for _, line := range bytes.Split(out, []byte("\r\n")) {
				if len(line) > 998 {
					t.Errorf("line of %d bytes", len(line))
				}
			}
		})
	}
}

const mixed = `From: news@vendor.example
Subject: report for {{attributes.first_name}}
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is a multi-part message in MIME format.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8

Hi {{attributes.first_name}},
see attached.
--inner
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Hi {{attributes.first_name}},</p><p>see attached.</p>
--inner--

--outer
Content-Type: text/plain; name=notes.txt
Content-Disposition: attachment; filename=notes.txt

Literal {{attributes.first_name}} in an attachment stays.
--outer
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-Disposition: inline; filename=x.png

`

// mixedMessage returns the multipart/mixed test message with a random
// base64 image, and the image part's raw bytes.
func mixedMessage(t testing.TB) (string, string) {
	img := make([]byte, 3000)
	rand.Read(img)
	e := base64.StdEncoding.EncodeToString(img)
	var b strings.Builder
	for len(e) > 76 {
		b.WriteString(e[:76] + "\r\n")
		e = e[76:]
	}
	b.WriteString(e)
	return crlfs(mixed) + b.String() + "\r\n--outer--\r\nepilogue\r\n", b.String()
}

func TestRenderMultipart(t *testing.T) {
	raw, img := mixedMessage(t)
	out := mustRender(t, mustParse(t, raw), testContact(`{"first_name":"Jane"}`))
	r := read(t, out)
	var got []string
	for _, p := range r.parts {
		got = append(got, p.mediaType)
	}
	if diff := cmp.Diff([]string{"text/plain", "text/html", "text/plain", "image/png"}, got); diff != "" {
		t.Fatalf("parts (-want +got):\n%s", diff)
	}
	if want := "Hi Jane,\r\nsee attached."; r.parts[0].text != want {
		t.Errorf("text = %q, want %q", r.parts[0].text, want)
	}
	if want := "<p>Hi Jane,</p><p>see attached.</p>"; r.parts[1].text != want {
		t.Errorf("html = %q, want %q", r.parts[1].text, want)
	}
	attachment := "Content-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment; filename=notes.txt\r\n\r\nLiteral {{attributes.first_name}} in an attachment stays.\r\n"
	image := "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: inline; filename=x.png\r\n\r\n" + img + "\r\n"
	for name, part := range map[string]string{"text attachment": attachment, "image": image} {
		if !bytes.Contains(out, []byte(part)) {
			t.Errorf("%s not passed through byte for byte", name)
		}
	}
	if !strings.HasPrefix(string(out), "From: news@vendor.example\r\nSubject: report for Jane\r\n") {
		t.Errorf("header:\n%s", out[:200])
	}
}

// TestRenderBoundaryInjection: a value holding a delimiter line of an
// enclosing multipart does not end its part.
func TestRenderBoundaryInjection(t *testing.T) {
	raw, _ := mixedMessage(t)
	tp := mustParse(t, raw)
	for _, tt := range []struct {
		v     string
		fresh bool
	}{
		{"Jane", false},
		{"Jane --inner and --outer mid-line", false},
		{"x\n--inner--\n", true},
		{"x\r\n--outer\r\nContent-Type: text/html\r\n\r\n<script>evil()</script>", true},
		{"--outer--", false}, // in a header and mid-line in the body: harmless
		{"\n--outer", true},
		{"\r--inner", true},
	} {
		attrs, _ := json.Marshal(map[string]string{"first_name": tt.v})
		out := mustRender(t, tp, testContact(string(attrs)))
		r := read(t, out)
		if len(r.parts) != 4 {
			t.Fatalf("value %q: %d parts, want 4:\n%s", tt.v, len(r.parts), out)
		}
		want := "Hi " + strings.NewReplacer("\r\n", "\r\n", "\n", "\r\n", "\r", "\r\n").Replace(tt.v) + ",\r\nsee attached."
		if r.parts[0].text != want {
			t.Errorf("value %q: text = %q, want %q", tt.v, r.parts[0].text, want)
		}
		_, ps, _ := r.header.ContentType()
		if fresh := ps["boundary"] != "outer"; fresh != tt.fresh {
			t.Errorf("value %q: fresh boundary %v, want %v", tt.v, fresh, tt.fresh)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	secret := "secret.person@example.org"
	tests := []struct {
		name, raw, want string
	}{
		{"empty", "", "no header"},
		{"no header", "\r\nbody", "no header"},
		{"header line without colon", "From: a@b.example\r\n" + secret + "\r\n\r\nbody", "malformed header"},
		{"unknown placeholder in body", "From: a@b.example\r\n\r\nHi {{first_name}}", `unknown placeholder "{{first_name}}"`},
		{"unknown placeholder with spaces", "From: a@b.example\r\n\r\nHi {{ attributes }}", `unknown placeholder "{{ attributes }}"`},
		{"bad attribute name", "From: a@b.example\r\n\r\nHi {{attributes.a b}}", `unknown placeholder "{{attributes.a b}}"`},
		{"unknown placeholder in subject", "From: a@b.example\r\nSubject: {{name}}\r\n\r\nx", `unknown placeholder "{{name}}"`},
		{"placeholder in an unsubstituted header", "From: a@b.example\r\nSender: {{email}}\r\n\r\nx", `placeholder "{{email}}" in header Sender`},
		{"placeholder in a From address", "From: News <{{attributes.x}}@b.example>\r\n\r\nx", "display names only"},
		{"placeholder in a part header", crlfs("From: a@b.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; name=\"{{token}}\"\n\nx\n--b--\n"), `part 1: placeholder "{{token}}" in header Content-Type`},
		{"malformed content type", "From: a@b.example\r\nContent-Type: text/plain; charset\r\n\r\nx", "malformed Content-Type"},
		{"multipart without boundary", "From: a@b.example\r\nContent-Type: multipart/mixed\r\n\r\nx", "without a valid boundary"},
		{"multipart without closing boundary", crlfs("From: a@b.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n" + secret + "\n"), "part 1: malformed multipart body"},
		{"multipart without parts", crlfs("From: a@b.example\nContent-Type: multipart/mixed; boundary=b\n\n--b--\n"), "without parts"},
		{"bad base64", "From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64" + secret, "does not decode"},
		{"unknown charset", "From: a@b.example\r\nContent-Type: text/plain; charset=x-nonesuch\r\n\r\nx", "unknown charset"},
		{"unknown transfer encoding", "From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-zip\r\n\r\nx", "unknown Content-Transfer-Encoding"},
		{"nested too deep", deep(maxMIMEDepth + 2), "nested more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTemplate([]byte(tt.raw))
			if err == nil {
				t.Fatal("ParseTemplate succeeded")
			}
			var ce *custos.Error
			if !errors.As(err, &ce) || ce.Code != custos.EINVALID {
				t.Fatalf("error %v, want an EINVALID custos.Error", err)
			}
			if !strings.Contains(ce.Message, tt.want) {
				t.Errorf("error %q, want it to contain %q", ce.Message, tt.want)
			}
			if strings.Contains(ce.Message, "secret") {
				t.Errorf("error %q echoes the message's data", ce.Message)
			}
		})
	}
	if _, err := ParseTemplate([]byte(deep(maxMIMEDepth - 1))); err != nil {
		t.Errorf("nesting within the limit: %v", err)
	}
}

// deep returns a message of n nested multiparts.
func deep(n int) string {
	var b strings.Builder
	b.WriteString("From: a@b.example\r\n")
	for i := range n {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + string(rune('a'+i)) + "\r\n\r\n--b" + string(rune('a'+i)) + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nx {{token}}\r\n")
	for i := n - 1; i >= 0; i-- {
		b.WriteString("--b" + string(rune('a'+i)) + "--\r\n")
	}
	return b.String()
}

func TestRenderErrors(t *testing.T) {
	tp := mustParse(t, crlfs("From: a@vendor.example\n\nHi {{attributes.profile}}"))
	tests := []struct {
		name string
		c    *custos.Contact
		id   string
		want string
	}{
		{"object attribute", testContact(`{"profile":{"a":1}}`), "m@h", `attribute "profile" is an object or array`},
		{"array attribute", testContact(`{"profile":[1]}`), "m@h", `attribute "profile" is an object or array`},
		{"attributes not an object", testContact(`[1]`), "m@h", "not a JSON object"},
		{"address with CRLF", &custos.Contact{Email: "secret@x.example\r\nBcc: y@z.example"}, "m@h", "not a valid mailbox"},
		{"address with a name", &custos.Contact{Email: "Secret <secret@x.example>"}, "m@h", "not a valid mailbox"},
		{"message id without host", testContact(""), "m", "message id"},
		{"message id with CRLF", testContact(""), "m@h\r\nBcc: x@y", "message id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tp.Render(tt.c, tt.id)
			var ce *custos.Error
			if !errors.As(err, &ce) || ce.Code != custos.EINVALID {
				t.Fatalf("Render error %v, want EINVALID", err)
			}
			if !strings.Contains(ce.Message, tt.want) || strings.Contains(ce.Message, "secret") {
				t.Errorf("error %q, want %q and no address", ce.Message, tt.want)
			}
		})
	}
	if _, err := tp.Render(testContact(""), "<m@h>"); err != nil {
		t.Errorf("message id in angle brackets: %v", err)
	}
}

func TestRenderLFInput(t *testing.T) {
	tp := mustParse(t, "From: a@vendor.example\nSubject: s\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nHi {{token}}\nbye\n--b--\n")
	out := mustRender(t, tp, testContact(""))
	if i := bytes.Index(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")); i >= 0 {
		t.Errorf("bare LF in the output:\n%q", out)
	}
	if got := read(t, out).parts[0].text; got != "Hi ct_0123456789abcdef\r\nbye" {
		t.Errorf("text = %q", got)
	}
}

func TestDigest(t *testing.T) {
	base := crlfs("From: a@vendor.example\nSubject: s {{token}}\n%s\nbody {{token}}\n")
	d := func(extra, body string) string {
		raw := strings.Replace(base, "%s", extra, 1)
		if body != "" {
			raw = strings.Replace(raw, "body", body, 1)
		}
		return mustParse(t, raw).Digest()
	}
	d0 := d("", "")
	if len(d0) != 64 {
		t.Fatalf("digest %q is not hex SHA-256", d0)
	}
	for _, extra := range []string{
		"To: x@y.example\r\nMessage-ID: <1@h>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
		"Bcc: z@y.example\r\nReceived: from a by b\r\n",
	} {
		if got := d(extra, ""); got != d0 {
			t.Errorf("digest changed with per-message fields %q", extra)
		}
	}
	if d("", "other") == d0 {
		t.Error("digest unchanged by another body")
	}
	if d("X-Campaign: 2\r\n", "") == d0 {
		t.Error("digest unchanged by another header")
	}
}

func TestTemplateFromParts(t *testing.T) {
	mt := &custos.MessageTemplate{
		From:    "Acme {{attributes.team}} <news@acme.example>",
		ReplyTo: "help@acme.example",
		Subject: "Grüße {{attributes.first_name}}",
		Text:    "Hi {{attributes.first_name}},\nbye",
		HTML:    "<p>Hi {{attributes.first_name}}</p>",
	}
	c := testContact(`{"first_name":"Zoë","team":"Sales"}`)
	tests := []struct {
		name       string
		text, html string
		want       []renderedPart
	}{
		{"text", mt.Text, "", []renderedPart{{mediaType: "text/plain", text: "Hi Zoë,\r\nbye"}}},
		{"html", "", mt.HTML, []renderedPart{{mediaType: "text/html", text: "<p>Hi Zoë</p>"}}},
		{"both", mt.Text, mt.HTML, []renderedPart{{mediaType: "text/plain", text: "Hi Zoë,\r\nbye"}, {mediaType: "text/html", text: "<p>Hi Zoë</p>"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := *mt
			p.Text, p.HTML = tt.text, tt.html
			tp, err := TemplateFromParts(&p)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := TemplateFromParts(&p)
			if tp.Digest() != again.Digest() {
				t.Error("same parts, different digests")
			}
			r := read(t, mustRender(t, tp, c))
			if diff := cmp.Diff(tt.want, r.parts, cmp.Comparer(func(a, b renderedPart) bool {
				return a.mediaType == b.mediaType && a.text == b.text
			})); diff != "" {
				t.Errorf("parts (-want +got):\n%s", diff)
			}
			h := mail.Header{Header: r.header}
			if s, _ := h.Subject(); s != "Grüße Zoë" {
				t.Errorf("Subject = %q", s)
			}
			if from, _ := h.AddressList("From"); len(from) != 1 || from[0].Name != "Acme Sales" || from[0].Address != "news@acme.example" {
				t.Errorf("From = %v", from)
			}
			if rt, _ := h.AddressList("Reply-To"); len(rt) != 1 || rt[0].Address != "help@acme.example" {
				t.Errorf("Reply-To = %v", rt)
			}
		})
	}
	other := *mt
	other.Text += "!"
	a, _ := TemplateFromParts(mt)
	b, _ := TemplateFromParts(&other)
	if a.Digest() == b.Digest() {
		t.Error("different parts, same digest")
	}
	for name, p := range map[string]*custos.MessageTemplate{
		"nil":                 nil,
		"no from":             {Subject: "s", Text: "t"},
		"no body":             {From: "a@b.example", Subject: "s"},
		"CRLF in subject":     {From: "a@b.example", Subject: "s\r\nBcc: x@evil.example", Text: "t"},
		"LF in from":          {From: "a@b.example\nBcc: x@evil.example", Text: "t"},
		"from not an address": {From: "nobody", Text: "t"},
		"unknown placeholder": {From: "a@b.example", Text: "{{name}}"},
	} {
		if _, err := TemplateFromParts(p); err == nil {
			t.Errorf("%s: TemplateFromParts succeeded", name)
		}
	}
}

// typicalTemplate is a campaign as a pipeline sends it: about 5 KB,
// multipart/alternative, quoted-printable text and HTML, placeholders in
// the subject, the greeting and the unsubscribe links.
func typicalTemplate(tb testing.TB) *Template {
	para := "We have updated our terms of service, and we wanted you to hear it from us first. Nothing changes for your plan; the details are on our site. "
	qp := func(s string) string {
		var b bytes.Buffer
		w := quotedprintable.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	text := "Hi {{attributes.first_name}},\r\n\r\n" + strings.Repeat(para+"\r\n\r\n", 8) + "Your plan: {{attributes.plan}} ({{attributes.seats}} seats)\r\nUnsubscribe: https://acme.example/u/{{token}}\r\n"
	html := "<html><body><p>Hi {{attributes.first_name}},</p>" + strings.Repeat("<p>"+para+"</p>\r\n", 8) + "<p>Your plan: {{attributes.plan}}</p><a href=\"https://acme.example/u/{{token}}\">Unsubscribe</a></body></html>"
	raw := "From: \"Acme\" <news@acme.example>\r\nSubject: {{attributes.first_name}}, news about your account\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"List-Unsubscribe: <https://acme.example/u/{{token}}>\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(text) +
		"\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(html) + "\r\n--b1--\r\n"
	return mustParse(tb, raw)
}

func BenchmarkRender(b *testing.B) {
	tp := typicalTemplate(b)
	c := testContact(`{"first_name":"Zoë","plan":"Team","seats":12,"country":"DE","signup":"2023-04-01"}`)
	b.ReportMetric(float64(tp.size), "template-bytes")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tp.Render(c, "ms_1.0@relay.example"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTypicalTemplate(t *testing.T) {
	tp := typicalTemplate(t)
	out := mustRender(t, tp, testContact(`{"first_name":"Zoë","plan":"Team","seats":12}`))
	r := read(t, out)
	if len(r.parts) != 2 || !strings.Contains(r.parts[0].text, "Your plan: Team (12 seats)") || !strings.Contains(r.parts[1].text, "Hi Zoë,") {
		t.Errorf("rendered:\n%s", out)
	}
	if s, _ := (&mail.Header{Header: r.header}).Subject(); s != "Zoë, news about your account" {
		t.Errorf("Subject = %q", s)
	}
	if got := r.header.Get("List-Unsubscribe"); got != "<https://acme.example/u/ct_0123456789abcdef>" {
		t.Errorf("List-Unsubscribe = %q", got)
	}
}

// TestRenderConcurrent: a template is shared by the relay's sessions; a
// render must not see another's values.
func TestRenderConcurrent(t *testing.T) {
	raw, _ := mixedMessage(t)
	tp := mustParse(t, raw)
	want := make([][]byte, 8)
	for i := range want {
		want[i] = mustRender(t, tp, testContact(`{"first_name":"n`+strings.Repeat("x", i*300)+`"}`))
	}
	errs := make(chan error, len(want))
	for i := range want {
		go func() {
			for range 50 {
				out, err := tp.Render(testContact(`{"first_name":"n`+strings.Repeat("x", i*300)+`"}`), "ms_1.0@relay.example")
				if err == nil && !bytes.Equal(out, want[i]) {
					err = errors.New("render differs under concurrency")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range want {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

package relay

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"github.com/custos-dev/custos"
)

// Message templates: the pipeline submits one message with placeholders
// ({{email}}, {{token}}, {{attributes.NAME}}, spaces allowed inside the
// braces) and the relay renders it once per recipient from the decrypted
// contact, in memory.
//
// A [Template] is parsed once (go-message walks the MIME tree) into a
// render plan: header fields and parts without placeholders are kept as
// their raw bytes, text parts with placeholders are kept decoded (UTF-8,
// CRLF line breaks) and split into literal and placeholder segments. A
// render concatenates the raw bytes, substitutes each text part and
// re-encodes it, so its cost is a copy of the message plus the encoding
// of the parts that change.
//
// What a substituted value can and cannot do:
//   - In a header it can never start a new field: control characters
//     become spaces, a non-ASCII value is RFC 2047-encoded, and in From
//     and Reply-To it only ever fills a display name, which is quoted or
//     encoded by net/mail (it cannot add an address).
//   - In a body it cannot end its part: a rendered part that contains a
//     delimiter line of an enclosing multipart makes the render start
//     again with fresh random boundaries.
//   - In text/html it is HTML-escaped; in other text it keeps its line
//     breaks, normalized to CRLF.
//
// Placeholders are substituted in Subject, From and Reply-To (display
// names only), X-* and List-* headers of the message, and in text/* parts
// that are not attachments. A placeholder anywhere else in a header is a
// parse error, so a template never goes out with a placeholder left in it
// unnoticed; attachments, images and other non-text parts are passed
// through byte for byte.

// Limits on a template's MIME structure, so a hostile message costs
// bounded work at parse time.
const (
	maxMIMEDepth = 16
	maxMIMEParts = 256
	// maxPlaceholderLen bounds what between "{{" and "}}" is taken for a
	// placeholder at all; longer (or multi-line) runs are text.
	maxPlaceholderLen = 100
)

// Template is a message with placeholders, parsed once and rendered per
// recipient. It is immutable and safe for concurrent use.
type Template struct {
	digest    string
	slots     []placeholder // the distinct placeholders; a segment's slot indexes it
	needAttrs bool
	root      *entity
	nmulti    int // multipart entities, numbered 0..nmulti-1
	size      int // the template's size, a hint for the output buffer
}

// placeholder is one distinct placeholder of a template.
type placeholder struct {
	kind int    // phEmail, phToken, phAttr
	attr string // the attribute's name, for phAttr
}

const (
	phEmail = iota
	phToken
	phAttr
)

// segment is a literal followed by a placeholder's value (slot < 0: no
// placeholder, the last segment of a text).
type segment struct {
	lit  string
	slot int
}

// entity is the message or one MIME part of it.
type entity struct {
	fields []field
	raw    []byte     // the body as is (non-text parts, text without placeholders)
	text   *textBody  // a text part with placeholders
	multi  *multiBody // a multipart: its parts
}

type fieldKind int

const (
	fieldRaw         fieldKind = iota // raw: the field's bytes, folded lines and CRLF included
	fieldText                         // an unstructured field with placeholders (Subject, X-*, List-*)
	fieldAddress                      // From or Reply-To with placeholders in display names
	fieldCTE                          // Content-Transfer-Encoding of a substituted text part
	fieldMultipartCT                  // Content-Type of a multipart (raw unless boundaries are fresh)
)

type field struct {
	kind  fieldKind
	raw   []byte
	name  string      // as the template spelled it (fieldText, fieldAddress)
	segs  []segment   // fieldText
	addrs []addrField // fieldAddress
}

type addrField struct {
	name []segment
	addr string
}

// Transfer encodings of a substituted text part.
const (
	enc7bit = iota // 7bit, 8bit, binary or none: sent as 7bit when the result allows, else quoted-printable
	encQP
	encBase64
)

var cteLines = [...]string{
	enc7bit:   "Content-Transfer-Encoding: 7bit\r\n",
	encQP:     "Content-Transfer-Encoding: quoted-printable\r\n",
	encBase64: "Content-Transfer-Encoding: base64\r\n",
}

type textBody struct {
	segs []segment
	html bool
	enc  int
}

type multiBody struct {
	id        int
	boundary  string
	delim     []byte // "\n--" + boundary
	mediaType string
	params    map[string]string
	parts     []*entity
}

// ParseTemplate parses a whole RFC 5322 message, as the pipeline submits
// it over SMTP or in SendRequest.Message. Malformed MIME, an unknown
// placeholder, or a placeholder where none is substituted is an EINVALID
// error whose message names the part or placeholder, never the data.
func ParseTemplate(raw []byte) (*Template, error) {
	raw = crlf(raw)
	if !bytes.Contains(raw, []byte("\r\n\r\n")) && !bytes.HasSuffix(raw, []byte("\n")) {
		// A header without a body whose last line is unterminated.
		raw = append(raw[:len(raw):len(raw)], '\r', '\n')
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	h, err := textproto.ReadHeader(br)
	if err != nil && !(errors.Is(err, io.EOF) && h.Len() > 0) {
		return nil, custos.Errorf(custos.EINVALID, "message: malformed header")
	}
	if h.Len() == 0 {
		return nil, custos.Errorf(custos.EINVALID, "message: no header")
	}
	body, _ := io.ReadAll(br)

	p := &parser{t: &Template{size: len(raw)}, slotOf: map[placeholder]int{}}
	e, err := p.entity(h, body, 0, "message")
	if err != nil {
		return nil, err
	}
	if !h.Has("Mime-Version") {
		e.fields = append(e.fields, field{raw: []byte("MIME-Version: 1.0\r\n")})
	}
	p.t.root = e
	p.t.digest = digest(h, body)
	return p.t, nil
}

// perMessage are the header fields of the template that belong to one
// transaction or one recipient, not to the campaign: Render replaces or
// drops them, and the digest leaves them out.
var perMessage = map[string]bool{
	"To": true, "Cc": true, "Bcc": true, "Message-Id": true,
	"Resent-To": true, "Resent-Cc": true, "Resent-Bcc": true,
}

// digest hashes the template as parsed, without the per-message fields
// and without Date and Received, so the same campaign submitted in
// several transactions has one digest.
func digest(h textproto.Header, body []byte) string {
	d := sha256.New()
	for f := h.Fields(); f.Next(); {
		if k := f.Key(); perMessage[k] || k == "Date" || k == "Received" {
			continue
		}
		b, _ := f.Raw()
		d.Write(b)
	}
	d.Write([]byte("\r\n"))
	d.Write(body)
	return hex.EncodeToString(d.Sum(nil))
}

// crlf turns bare LF line breaks into CRLF (a message submitted over HTTP
// may use LF); a message already in CRLF is returned as is.
func crlf(raw []byte) []byte {
	n := 0
	for i, b := range raw {
		if b == '\n' && (i == 0 || raw[i-1] != '\r') {
			n++
		}
	}
	if n == 0 {
		return raw
	}
	out := make([]byte, 0, len(raw)+n)
	for i, b := range raw {
		if b == '\n' && (i == 0 || raw[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	return out
}

type parser struct {
	t      *Template
	slotOf map[placeholder]int
	parts  int
}

func (p *parser) entity(h textproto.Header, body []byte, depth int, where string) (*entity, error) {
	if depth > maxMIMEDepth {
		return nil, custos.Errorf(custos.EINVALID, "%s: MIME parts nested more than %d deep", where, maxMIMEDepth)
	}
	if p.parts++; p.parts > maxMIMEParts {
		return nil, custos.Errorf(custos.EINVALID, "message: more than %d MIME parts", maxMIMEParts)
	}
	mediaType, params := "text/plain", map[string]string{}
	if ct := h.Get("Content-Type"); ct != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(ct); err != nil {
			return nil, custos.Errorf(custos.EINVALID, "%s: malformed Content-Type", where)
		}
	}
	attachment := false
	if cd := h.Get("Content-Disposition"); cd != "" {
		d, _, err := mime.ParseMediaType(cd)
		attachment = err != nil || d == "attachment" // unparseable: treat as an attachment, pass it through
	}
	top := depth == 0
	e := &entity{}
	var err error
	switch {
	case strings.HasPrefix(mediaType, "multipart/"):
		e.multi, err = p.multipart(mediaType, params, body, depth, where)
	case strings.HasPrefix(mediaType, "text/") && !attachment:
		e.text, err = p.text(h, mediaType, body, where)
	}
	if err != nil {
		return nil, err
	}
	if e.text != nil && len(e.text.segs) == 1 {
		e.text = nil // no placeholder: the part goes out exactly as it came
	}
	if e.text == nil && e.multi == nil {
		e.raw = body
	}
	hasCT, hasCTE := false, false
	for f := h.Fields(); f.Next(); {
		k := f.Key()
		raw, _ := f.Raw()
		switch {
		case top && perMessage[k]:
			continue
		case k == "Content-Type" && !hasCT:
			hasCT = true
			switch {
			case e.text != nil:
				e.fields = append(e.fields, textContentType(mediaType, params))
				continue
			case e.multi != nil:
				e.fields = append(e.fields, field{kind: fieldMultipartCT, raw: raw})
				continue
			}
		case k == "Content-Transfer-Encoding" && e.text != nil:
			if !hasCTE {
				e.fields = append(e.fields, field{kind: fieldCTE})
			}
			hasCTE = true
			continue
		case top && (k == "Subject" || strings.HasPrefix(k, "X-") || strings.HasPrefix(k, "List-")):
			fd, err := p.textField(raw, f.Value())
			if err != nil {
				return nil, err
			}
			e.fields = append(e.fields, fd)
			continue
		case top && (k == "From" || k == "Reply-To"):
			fd, err := p.addressField(raw, k, f.Value())
			if err != nil {
				return nil, err
			}
			e.fields = append(e.fields, fd)
			continue
		}
		if ph, ok := firstPlaceholder(f.Value()); ok {
			return nil, custos.Errorf(custos.EINVALID, "%s: placeholder %q in header %s: placeholders are substituted only in Subject, From and Reply-To display names, X-* and List-* headers of the message", where, ph, k)
		}
		e.fields = append(e.fields, field{raw: raw})
	}
	if e.text != nil {
		if !hasCT {
			e.fields = append(e.fields, textContentType(mediaType, params))
		}
		if !hasCTE {
			e.fields = append(e.fields, field{kind: fieldCTE})
		}
	}
	return e, nil
}

func textContentType(mediaType string, params map[string]string) field {
	ps := make(map[string]string, len(params)+1)
	for k, v := range params {
		ps[k] = v
	}
	ps["charset"] = "utf-8"
	return field{raw: appendFolded(nil, "Content-Type", mime.FormatMediaType(mediaType, ps))}
}

func (p *parser) multipart(mediaType string, params map[string]string, body []byte, depth int, where string) (*multiBody, error) {
	b := params["boundary"]
	if b == "" || len(b) > 70 {
		return nil, custos.Errorf(custos.EINVALID, "%s: multipart without a valid boundary", where)
	}
	m := &multiBody{id: p.t.nmulti, boundary: b, delim: []byte("\n--" + b), mediaType: mediaType, params: params}
	p.t.nmulti++
	mr := textproto.NewMultipartReader(bytes.NewReader(body), b)
	for i := 1; ; i++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		sub := where + "." + strconv.Itoa(i)
		if where == "message" {
			sub = "part " + strconv.Itoa(i)
		}
		if err != nil {
			return nil, custos.Errorf(custos.EINVALID, "%s: malformed multipart body", sub)
		}
		raw, err := io.ReadAll(part)
		if err != nil {
			return nil, custos.Errorf(custos.EINVALID, "%s: malformed multipart body (missing closing boundary?)", sub)
		}
		c, err := p.entity(part.Header, raw, depth+1, sub)
		if err != nil {
			return nil, err
		}
		m.parts = append(m.parts, c)
	}
	if len(m.parts) == 0 {
		return nil, custos.Errorf(custos.EINVALID, "%s: multipart without parts", where)
	}
	return m, nil
}

func (p *parser) text(h textproto.Header, mediaType string, body []byte, where string) (*textBody, error) {
	tb := &textBody{html: mediaType == "text/html"}
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "quoted-printable":
		tb.enc = encQP
	case "base64":
		tb.enc = encBase64
	}
	ent, err := message.New(message.Header{Header: h}, bytes.NewReader(body))
	switch {
	case message.IsUnknownCharset(err):
		return nil, custos.Errorf(custos.EINVALID, "%s: unknown charset", where)
	case err != nil:
		return nil, custos.Errorf(custos.EINVALID, "%s: unknown Content-Transfer-Encoding", where)
	}
	dec, err := io.ReadAll(ent.Body)
	if err != nil {
		return nil, custos.Errorf(custos.EINVALID, "%s: body does not decode as its Content-Transfer-Encoding and charset say", where)
	}
	tb.segs, err = p.segments(string(appendCRLF(nil, string(dec))))
	if err != nil {
		return nil, custos.Prefixed(custos.EINVALID, where, err)
	}
	return tb, nil
}

// textField plans an unstructured header field (Subject, X-*, List-*).
func (p *parser) textField(raw []byte, value string) (field, error) {
	if !strings.Contains(value, "{{") && !strings.Contains(value, "=?") {
		return field{raw: raw}, nil
	}
	segs, err := p.segments(decodeHeader(value))
	if err != nil {
		return field{}, err
	}
	if len(segs) == 1 {
		return field{raw: raw}, nil
	}
	return field{kind: fieldText, name: fieldName(raw), segs: segs}, nil
}

// addressField plans From or Reply-To: placeholders may fill display
// names, never addresses.
func (p *parser) addressField(raw []byte, key, value string) (field, error) {
	if _, ok := firstPlaceholder(decodeHeader(value)); !ok {
		return field{raw: raw}, nil
	}
	ap := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}
	list, err := ap.ParseList(value)
	if err != nil {
		return field{}, custos.Errorf(custos.EINVALID, "message: %s with placeholders is not a valid address list", key)
	}
	fd := field{kind: fieldAddress, name: fieldName(raw)}
	for _, a := range list {
		if ph, ok := firstPlaceholder(a.Address); ok {
			return field{}, custos.Errorf(custos.EINVALID, "message: placeholder %q in an address of %s: placeholders may fill display names only", ph, key)
		}
		segs, err := p.segments(a.Name)
		if err != nil {
			return field{}, err
		}
		fd.addrs = append(fd.addrs, addrField{name: segs, addr: a.Address})
	}
	return fd, nil
}

func fieldName(raw []byte) string {
	i := bytes.IndexByte(raw, ':')
	return string(bytes.TrimSpace(raw[:i]))
}

func decodeHeader(v string) string {
	d := mime.WordDecoder{CharsetReader: charset.Reader}
	if s, err := d.DecodeHeader(v); err == nil {
		return s
	}
	return v
}

// nextPlaceholder finds the next "{{…}}" in s at or after i: its start and
// end (past "}}"), and the name inside, trimmed.
func nextPlaceholder(s string, i int) (start, end int, name string, ok bool) {
	for {
		j := strings.Index(s[i:], "{{")
		if j < 0 {
			return 0, 0, "", false
		}
		start = i + j
		// Look for the end within reach only: linear time on any input.
		k := strings.Index(s[start+2:min(len(s), start+2+maxPlaceholderLen+2)], "}}")
		if k >= 0 {
			inner := s[start+2 : start+2+k]
			if !strings.ContainsAny(inner, "{\r\n") {
				return start, start + 2 + k + 2, strings.Trim(inner, " \t"), true
			}
		}
		i = start + 1
	}
}

// firstPlaceholder returns the first thing in s that looks like a
// placeholder, known or not.
func firstPlaceholder(s string) (string, bool) {
	start, end, _, ok := nextPlaceholder(s, 0)
	if !ok {
		return "", false
	}
	return s[start:end], true
}

// segments splits s into literals and placeholders; an unknown
// placeholder is an error naming it.
func (p *parser) segments(s string) ([]segment, error) {
	var segs []segment
	i := 0
	for {
		start, end, name, ok := nextPlaceholder(s, i)
		if !ok {
			return append(segs, segment{lit: s[i:], slot: -1}), nil
		}
		ph, known := parsePlaceholder(name)
		if !known {
			return nil, custos.Errorf(custos.EINVALID, "unknown placeholder %q: use {{email}}, {{token}} or {{attributes.NAME}}", s[start:end])
		}
		slot, seen := p.slotOf[ph]
		if !seen {
			slot = len(p.t.slots)
			p.slotOf[ph] = slot
			p.t.slots = append(p.t.slots, ph)
			p.t.needAttrs = p.t.needAttrs || ph.kind == phAttr
		}
		segs = append(segs, segment{lit: s[i:start], slot: slot})
		i = end
	}
}

func parsePlaceholder(name string) (placeholder, bool) {
	switch name {
	case "email":
		return placeholder{kind: phEmail}, true
	case "token":
		return placeholder{kind: phToken}, true
	}
	attr, ok := strings.CutPrefix(name, "attributes.")
	if !ok || attr == "" {
		return placeholder{}, false
	}
	for _, r := range attr {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return placeholder{}, false
		}
	}
	return placeholder{kind: phAttr, attr: attr}, true
}

// TemplateFromParts builds a template from a [custos.MessageTemplate]:
// text/plain, text/html, or multipart/alternative when both are given.
// The message built is deterministic (its boundary derives from its
// content), so one campaign has one digest.
func TemplateFromParts(mt *custos.MessageTemplate) (*Template, error) {
	switch {
	case mt == nil || mt.From == "":
		return nil, custos.Errorf(custos.EINVALID, "template.from is required")
	case mt.Text == "" && mt.HTML == "":
		return nil, custos.Errorf(custos.EINVALID, "template needs text, html or both")
	}
	var b []byte
	for _, f := range []struct{ name, json, v string }{
		{"From", "from", mt.From}, {"Reply-To", "reply_to", mt.ReplyTo}, {"Subject", "subject", mt.Subject},
	} {
		if strings.ContainsFunc(f.v, isControl) {
			return nil, custos.Errorf(custos.EINVALID, "template.%s must not contain control characters", f.json)
		}
		if f.v == "" && f.name != "Subject" {
			continue
		}
		v := mime.QEncoding.Encode("utf-8", f.v)
		if f.name != "Subject" {
			list, err := mail.ParseAddressList(f.v)
			if err != nil {
				return nil, custos.Errorf(custos.EINVALID, "template.%s is not a valid address (list)", f.json)
			}
			as := make([]string, len(list))
			for i, a := range list {
				as[i] = a.String()
			}
			v = strings.Join(as, ", ")
		}
		b = appendFolded(b, f.name, v)
	}
	b = append(b, "MIME-Version: 1.0\r\n"...)
	part := func(b []byte, mediaType, text string) []byte {
		body := appendCRLF(nil, text)
		enc := "7bit"
		if !is7bit(body) {
			var qp []byte
			w := quotedprintable.NewWriter(appender{&qp})
			w.Write(body)
			w.Close()
			body, enc = qp, "quoted-printable"
		}
		b = append(b, "Content-Type: "+mediaType+"; charset=utf-8\r\nContent-Transfer-Encoding: "+enc+"\r\n\r\n"...)
		return append(b, body...)
	}
	switch {
	case mt.Text == "":
		b = part(b, "text/html", mt.HTML)
	case mt.HTML == "":
		b = part(b, "text/plain", mt.Text)
	default:
		sum := sha256.Sum256([]byte(mt.Text + "\x00" + mt.HTML))
		boundary := "=_custos_" + hex.EncodeToString(sum[:16])
		b = append(b, "Content-Type: multipart/alternative; boundary=\""+boundary+"\"\r\n\r\n--"+boundary+"\r\n"...)
		b = part(b, "text/plain", mt.Text)
		b = append(b, "\r\n--"+boundary+"\r\n"...)
		b = part(b, "text/html", mt.HTML)
		b = append(b, "\r\n--"+boundary+"--\r\n"...)
	}
	t, err := ParseTemplate(b)
	if err != nil {
		return nil, custos.Prefixed(custos.EINVALID, "template", err)
	}
	return t, nil
}

// Digest is the hex SHA-256 of the template as parsed, before
// substitution and without its To, Cc, Bcc, Message-ID, Date and Received
// fields: the same campaign has the same digest.
func (t *Template) Digest() string { return t.digest }

// Placeholders reports whether the template has any placeholder.
func (t *Template) Placeholders() bool { return len(t.slots) > 0 }

type renderer struct {
	t       *Template
	vals    []string
	out     []byte
	scratch []byte
	fresh   []string // fresh boundaries by multipart id, after a collision
	delims  [][]byte // "\n--boundary" of the enclosing multiparts
	collide bool
}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// Render returns the message for one recipient: the template's To, Cc
// and Bcc removed (the envelope decides who receives it), To set to the
// contact's address, Message-ID set to <messageID> (an "id@host" value,
// angle brackets optional), and placeholders substituted. An error (an
// invalid address, an attribute that is an object or array) is EINVALID
// and names no personal data.
func (t *Template) Render(c *custos.Contact, messageID string) ([]byte, error) {
	messageID = strings.TrimSuffix(strings.TrimPrefix(messageID, "<"), ">")
	if !validMessageID(messageID) {
		return nil, custos.Errorf(custos.EINVALID, "render: message id must look like id@host")
	}
	if a, err := mail.ParseAddress(c.Email); err != nil || a.Name != "" || a.Address != c.Email {
		return nil, custos.Errorf(custos.EINVALID, "render: recipient address is not a valid mailbox")
	}
	vals, err := t.values(c)
	if err != nil {
		return nil, err
	}
	n := t.size + 128 + len(messageID) + len(c.Email)
	for _, v := range vals {
		n += 3 * len(v)
	}
	sp := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(sp)
	r := &renderer{t: t, vals: vals, out: make([]byte, 0, n), scratch: (*sp)[:0]}
	top := func() {
		r.out = append(r.out, "To: <"...)
		r.out = append(r.out, c.Email...)
		r.out = append(r.out, ">\r\nMessage-ID: <"...)
		r.out = append(r.out, messageID...)
		r.out = append(r.out, ">\r\n"...)
	}
	r.entity(t.root, top)
	if r.collide {
		// A value holds a delimiter line of an enclosing multipart: start
		// again with boundaries nobody can have guessed.
		r.fresh = make([]string, t.nmulti)
		for i := range r.fresh {
			r.fresh[i] = "=_" + rand.Text()
		}
		r.out, r.collide, r.delims = r.out[:0], false, r.delims[:0]
		r.entity(t.root, top)
		if r.collide {
			return nil, custos.Errorf(custos.EINTERNAL, "render: multipart boundary collision")
		}
	}
	*sp = r.scratch[:0]
	return r.out, nil
}

func validMessageID(id string) bool {
	l, h, ok := strings.Cut(id, "@")
	if !ok || l == "" || h == "" || len(id) > 250 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; b <= ' ' || b >= 0x7f || b == '<' || b == '>' {
			return false
		}
	}
	return true
}

// values computes each placeholder's raw value for c.
func (t *Template) values(c *custos.Contact) ([]string, error) {
	vals := make([]string, len(t.slots))
	var attrs map[string]json.RawMessage
	if t.needAttrs && len(c.Attributes) > 0 {
		if err := json.Unmarshal(c.Attributes, &attrs); err != nil {
			return nil, custos.Errorf(custos.EINVALID, "render: contact attributes are not a JSON object")
		}
	}
	for i, ph := range t.slots {
		switch ph.kind {
		case phEmail:
			vals[i] = c.Email
		case phToken:
			vals[i] = c.Token
		case phAttr:
			raw := bytes.TrimSpace(attrs[ph.attr])
			if len(raw) == 0 {
				continue
			}
			switch raw[0] {
			case '"':
				if err := json.Unmarshal(raw, &vals[i]); err != nil {
					return nil, custos.Errorf(custos.EINVALID, "render: attribute %q is not valid JSON", ph.attr)
				}
			case 'n': // null: like a missing attribute
			case '{', '[':
				return nil, custos.Errorf(custos.EINVALID, "render: attribute %q is an object or array, not a string, number or boolean", ph.attr)
			default: // a number or a boolean, as written
				vals[i] = string(raw)
			}
		}
	}
	return vals, nil
}

// entity renders e; top, if not nil, writes the per-recipient fields at
// the end of the message header.
func (r *renderer) entity(e *entity, top func()) {
	enc := 0
	var body []byte
	if e.text != nil {
		body, enc = r.text(e.text)
	}
	for i := range e.fields {
		if f := &e.fields[i]; f.kind == fieldMultipartCT && r.fresh != nil {
			r.out = r.multipartType(r.out, e.multi)
		} else {
			r.field(f, enc)
		}
	}
	if top != nil {
		top()
	}
	r.out = append(r.out, '\r', '\n')
	switch {
	case e.multi != nil:
		r.multipart(e.multi)
	case e.text != nil:
		start := len(r.out)
		r.encode(body, enc)
		r.check(r.out[start:])
	default:
		r.out = append(r.out, e.raw...)
	}
}

func (r *renderer) field(f *field, enc int) {
	switch f.kind {
	case fieldRaw:
		r.out = append(r.out, f.raw...)
	case fieldCTE:
		r.out = append(r.out, cteLines[enc]...)
	case fieldMultipartCT:
		r.out = append(r.out, f.raw...)
	case fieldText:
		v := r.compose(f.segs)
		if hasNonASCII(v) {
			v = mime.QEncoding.Encode("utf-8", v)
		}
		r.out = appendFolded(r.out, f.name, v)
	case fieldAddress:
		as := make([]string, len(f.addrs))
		for i, a := range f.addrs {
			as[i] = (&mail.Address{Name: r.compose(a.name), Address: a.addr}).String()
		}
		r.out = appendFolded(r.out, f.name, strings.Join(as, ", "))
	}
}

// compose substitutes a header's segments: control characters (CR and
// LF above all) become spaces, so no value can start a header field.
func (r *renderer) compose(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteString(s.lit)
		if s.slot >= 0 {
			b.WriteString(r.vals[s.slot])
		}
	}
	v := b.String()
	if strings.ContainsFunc(v, isControl) || !utf8.ValidString(v) {
		v = strings.Map(func(r rune) rune {
			if isControl(r) {
				return ' '
			}
			return r
		}, strings.ToValidUTF8(v, "\uFFFD"))
	}
	return strings.TrimSpace(v)
}

// isControl reports the characters a header value must not carry: C0 and
// C1 controls, DEL, and the Unicode line and paragraph separators.
func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// text substitutes a text part into r.scratch and picks its encoding.
func (r *renderer) text(tb *textBody) ([]byte, int) {
	s := r.scratch[:0]
	for _, sg := range tb.segs {
		s = append(s, sg.lit...)
		if sg.slot < 0 {
			continue
		}
		if tb.html {
			s = appendHTML(s, r.vals[sg.slot])
		} else {
			s = appendCRLF(s, r.vals[sg.slot])
		}
	}
	r.scratch = s
	enc := tb.enc
	if enc == enc7bit && !is7bit(s) {
		enc = encQP
	}
	return s, enc
}

func (r *renderer) encode(body []byte, enc int) {
	switch enc {
	case encBase64:
		const chunk = 57 // 76 characters a line
		for i := 0; i < len(body); i += chunk {
			r.out = base64.StdEncoding.AppendEncode(r.out, body[i:min(i+chunk, len(body))])
			r.out = append(r.out, '\r', '\n')
		}
	case encQP:
		w := quotedprintable.NewWriter(appender{&r.out})
		w.Write(body) // appender never fails
		w.Close()
	default:
		r.out = append(r.out, body...)
	}
}

// check records whether a rendered part contains a delimiter line of an
// enclosing multipart ("--boundary" at the start of a line).
func (r *renderer) check(body []byte) {
	for _, d := range r.delims {
		if bytes.HasPrefix(body, d[1:]) || bytes.Contains(body, d) {
			r.collide = true
		}
	}
}

func (r *renderer) multipart(m *multiBody) {
	b, delim := m.boundary, m.delim
	if r.fresh != nil {
		b = r.fresh[m.id]
		delim = []byte("\n--" + b)
	}
	r.delims = append(r.delims, delim)
	for _, part := range m.parts {
		r.out = append(r.out, "--"...)
		r.out = append(r.out, b...)
		r.out = append(r.out, '\r', '\n')
		r.entity(part, nil)
		r.out = append(r.out, '\r', '\n')
	}
	r.out = append(r.out, "--"...)
	r.out = append(r.out, b...)
	r.out = append(r.out, "--\r\n"...)
	r.delims = r.delims[:len(r.delims)-1]
}

// multipartType appends a multipart's Content-Type with its fresh boundary.
func (r *renderer) multipartType(dst []byte, m *multiBody) []byte {
	ps := make(map[string]string, len(m.params))
	for k, v := range m.params {
		ps[k] = v
	}
	ps["boundary"] = r.fresh[m.id]
	return appendFolded(dst, "Content-Type", mime.FormatMediaType(m.mediaType, ps))
}

// is7bit reports whether s can go out as 7bit: ASCII without NUL, lines
// of at most 998 characters (s has CRLF line breaks only).
func is7bit(s []byte) bool {
	line := 0
	for _, b := range s {
		switch {
		case b == 0 || b >= 0x80:
			return false
		case b == '\n':
			line = 0
		default:
			if line++; line > 998 {
				return false
			}
		}
	}
	return true
}

// appendCRLF appends s with every line break (CRLF, LF or CR) as CRLF.
func appendCRLF(dst []byte, s string) []byte {
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, '\r', '\n')
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
}

// appendHTML appends s HTML-escaped (as html.EscapeString), line breaks
// as CRLF.
func appendHTML(dst []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '\r', '\n':
			esc = "\r\n"
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				dst = append(dst, s[last:i]...)
				dst = append(dst, esc...)
				i++
				last = i + 1
				continue
			}
		default:
			continue
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, esc...)
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// appendFolded appends "name: value" CRLF, folded before spaces so lines
// stay within 78 characters where the value allows it (v has no line
// breaks and no trailing space).
func appendFolded(dst []byte, name, v string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':')
	col := len(name) + 1
	v = " " + v
	for len(v) > 0 {
		w := len(v)
		if i := strings.IndexByte(v[1:], ' '); i >= 0 {
			w = i + 1
		}
		if col+w > 78 && w > 1 {
			dst = append(dst, '\r', '\n')
			col = 0
		}
		dst = append(dst, v[:w]...)
		col += w
		v = v[w:]
	}
	return append(dst, '\r', '\n')
}

type appender struct{ b *[]byte }

func (a appender) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

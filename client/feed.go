package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/plainjson"
)

// DecodeAccessFeed decodes a page of a tenant's access feed (the JSON of
// GET /v1/tenants/{tenant}/access-log) exactly as json.Unmarshal does
// into a custos.AccessFeed — same result, same refusal of what is not
// JSON — fast for the pages servers write with page proofs.
//
// Such a page is in one shape (audit.Feed.AppendJSON): no whitespace,
// the keys in one order, every entry `{"tenant_seq":N,"index":N,
// "body":{…},"salt":"…","proof":[]}`, bodies as the sequencer writes
// them (json.Marshal's: ASCII keys, strings without escapes, unsigned
// integers, arrays of strings). A page in that shape is read in one pass
// without reflection, the bodies kept as they are (the bytes their
// leaves commit to, which the caller then checks); any other document —
// an escape, whitespace, a key in another order or case, a proof of an
// entry's own, a negative or fractional number, anything unusual — goes
// to json.Unmarshal. The fast path only ever accepts what encoding/json
// would and reads it the same way (FuzzDecodeAccessFeed checks both).
// encoding/json was most of `custos audit pull`'s CPU.
func DecodeAccessFeed(b []byte) (*custos.AccessFeed, error) {
	f := new(custos.AccessFeed)
	if fastAccessFeed(b, f) {
		return f, nil
	}
	*f = custos.AccessFeed{}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, err
	}
	return f, nil
}

// feedScanner reads a document in the fast path's shape; ok turns false
// at the first byte out of that shape and stays false.
type feedScanner struct {
	b  []byte
	i  int
	ok bool
}

// lit consumes s.
func (s *feedScanner) lit(lit string) {
	if s.ok && bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.i += len(lit)
		return
	}
	s.ok = false
}

// peek reports whether lit comes next, without consuming it.
func (s *feedScanner) peek(lit string) bool {
	return s.ok && bytes.HasPrefix(s.b[s.i:], []byte(lit))
}

// str reads a string of printable ASCII without escapes.
func (s *feedScanner) str() []byte {
	if !s.ok {
		return nil
	}
	v, n, ok := plainjson.String(s.b, s.i)
	if !ok {
		s.ok = false
		return nil
	}
	s.i = n
	return v
}

// bytes64 reads a non-empty standard base64 string as encoding/json
// reads a []byte.
func (s *feedScanner) bytes64() []byte {
	v := s.str()
	if !s.ok || len(v) == 0 {
		s.ok = false
		return nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Decode(out, v)
	if err != nil {
		s.ok = false
		return nil
	}
	return out[:n]
}

// uint reads an unsigned integer as encoding/json reads it into a uint64.
func (s *feedScanner) uint() uint64 {
	if !s.ok {
		return 0
	}
	v, n, ok := plainjson.Uint(s.b, s.i)
	if !ok {
		s.ok = false
		return 0
	}
	s.i = n
	return v
}

// object skips an object of plain keys and values and returns its bytes.
func (s *feedScanner) object() []byte {
	if !s.ok {
		return nil
	}
	start := s.i
	s.lit("{")
	if s.peek("}") {
		s.i++
		return s.b[start:s.i]
	}
	for s.ok {
		s.str()
		s.lit(":")
		if !s.ok {
			return nil
		}
		n, ok := plainjson.Skip(s.b, s.i)
		if !ok {
			s.ok = false
			return nil
		}
		s.i = n
		if s.peek(",") {
			s.i++
			continue
		}
		s.lit("}")
		break
	}
	if !s.ok {
		return nil
	}
	return s.b[start:s.i]
}

// fastAccessFeed is DecodeAccessFeed's fast path: false means "not sure",
// never "not JSON".
func fastAccessFeed(b []byte, f *custos.AccessFeed) bool {
	s := &feedScanner{b: bytes.TrimRight(b, " \t\r\n"), ok: true}
	s.lit(`{"checkpoint":`)
	f.Checkpoint = s.bytes64()
	s.lit(`,"entries":[`)
	f.Entries = []custos.FeedEntry{}
	if s.peek("]") {
		s.i++
	} else {
		for s.ok {
			var e custos.FeedEntry
			s.lit(`{"tenant_seq":`)
			e.TenantSeq = s.uint()
			s.lit(`,"index":`)
			e.Index = s.uint()
			s.lit(`,"body":`)
			e.Body = s.object()
			if s.peek(`,"salt":`) {
				s.i += len(`,"salt":`)
				e.Salt = s.bytes64()
			}
			s.lit(`,"proof":[]}`)
			e.Proof = []custos.Hash{}
			if !s.ok {
				return false
			}
			f.Entries = append(f.Entries, e)
			if s.peek(",") {
				s.i++
				continue
			}
			s.lit("]")
			break
		}
	}
	s.lit(`,"more":`)
	switch {
	case s.peek("true"):
		f.More, s.i = true, s.i+4
	case s.peek("false"):
		s.i += 5
	default:
		return false
	}
	if s.peek(`,"page_proof":`) {
		s.i += len(`,"page_proof":`)
		f.PageProof = s.bytes64()
	}
	s.lit("}")
	return s.ok && s.i == len(s.b)
}

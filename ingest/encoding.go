package ingest

import (
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"

	"github.com/custos-dev/custos"
)

// Options adjust how an import is read. The zero value reads UTF-8.
type Options struct {
	// Encoding names the input's character encoding: "" or "utf-8"
	// (invalid UTF-8 is refused, naming its line), or "latin1"
	// ("iso-8859-1") or "windows-1252", converted to UTF-8. Names are
	// case-insensitive.
	Encoding string
}

// Validate checks the options.
func (o Options) Validate() error {
	if _, ok := encodings[strings.ToLower(o.Encoding)]; !ok {
		return custos.Errorf(custos.EINVALID, "encoding must be utf-8, latin1 (iso-8859-1) or windows-1252")
	}
	return nil
}

// encodings maps the accepted names to their decoders; nil is UTF-8.
var encodings = map[string]*charmap.Charmap{
	"":             nil,
	"utf-8":        nil,
	"utf8":         nil,
	"latin1":       charmap.ISO8859_1,
	"latin-1":      charmap.ISO8859_1,
	"iso-8859-1":   charmap.ISO8859_1,
	"windows-1252": charmap.Windows1252,
	"cp1252":       charmap.Windows1252,
}

// CSV is [NewCSV] reading input in o's encoding.
func (o Options) CSV(r io.Reader) (*Reader, error) {
	in, err := o.decode(r)
	if err != nil {
		return nil, err
	}
	return newCSV(in)
}

// NDJSON is [NewNDJSON] reading input in o's encoding.
func (o Options) NDJSON(r io.Reader) (*Reader, error) {
	in, err := o.decode(r)
	if err != nil {
		return nil, err
	}
	return newNDJSON(in), nil
}

// decode returns r as checked UTF-8: converted from a legacy encoding,
// then checked either way, so that a parser never sees invalid UTF-8.
func (o Options) decode(r io.Reader) (io.Reader, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if cm := encodings[strings.ToLower(o.Encoding)]; cm != nil {
		r = cm.NewDecoder().Reader(r)
	}
	return &utf8Check{r: r, line: 1}, nil
}

// encodingError is the fatal error of input that is not UTF-8. It names
// the line and nothing of its content.
type encodingError struct{ line int }

func (e *encodingError) Error() string { return "invalid UTF-8" }

func (e *encodingError) domain() error {
	return custos.Errorf(custos.EINVALID, "line %d: not valid UTF-8; convert the file to UTF-8, or name its encoding (latin1, windows-1252)", e.line)
}

// utf8Check passes UTF-8 through and fails, with an *encodingError naming
// the line, at the first byte that is not. A sequence split across reads
// is held back until it is complete.
type utf8Check struct {
	r    io.Reader
	line int // the line of the next byte checked
	buf  [32<<10 + utf8.UTFMax]byte
	out  []byte // checked, not yet returned
	pend []byte // the start of a sequence the last read cut
	held [utf8.UTFMax]byte
	err  error
}

func (u *utf8Check) Read(p []byte) (int, error) {
	for len(u.out) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		k := copy(u.buf[:], u.pend)
		n, err := u.r.Read(u.buf[k:])
		data := u.buf[:k+n]
		i := 0
		for i < len(data) {
			c := data[i]
			if c < utf8.RuneSelf {
				if c == '\n' {
					u.line++
				}
				i++
				continue
			}
			if !utf8.FullRune(data[i:]) && err == nil {
				break // wait for the rest of the sequence
			}
			if r, size := utf8.DecodeRune(data[i:]); r == utf8.RuneError && size == 1 {
				err = &encodingError{line: u.line}
				break
			} else {
				i += size
			}
		}
		u.out = data[:i]
		var enc *encodingError
		if err == nil || !errors.As(err, &enc) {
			u.pend = append(u.held[:0], data[i:]...)
		}
		if err != nil {
			u.err = err
		}
	}
	n := copy(p, u.out)
	u.out = u.out[n:]
	return n, nil
}

// Package ingest parses bulk imports — CSV and NDJSON — as streams of
// rows with their line numbers, in constant memory whatever the file size.
//
// A bad row is a *[RowError]: the caller records it and goes on. Any other
// error ends the stream (an I/O error, a CSV quoting error after which
// line boundaries can no longer be trusted, a line over [MaxLineBytes]).
// Messages name the rule a row broke, never its content.
package ingest

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/custos-dev/custos"
)

// MaxLineBytes bounds one input line (one record for CSV).
const MaxLineBytes = 64 << 10

// Row is one contact to import. Email is as given; the caller normalises.
type Row struct {
	Line       int
	Email      string
	Attributes json.RawMessage // a JSON object, or nil
	Consent    custos.Consent
}

// RowError is a refused row: the API's [custos.RowError].
type RowError = custos.RowError

func rowErr(line int, format string, args ...any) *RowError {
	return &RowError{Line: line, Code: custos.EINVALID, Message: fmt.Sprintf(format, args...)}
}

// Reader yields rows.
type Reader struct {
	next func() (Row, error)
}

// Next returns the next row, a *RowError for a refused row, io.EOF at the
// end, or a fatal error.
func (r *Reader) Next() (Row, error) { return r.next() }

// validate applies the row rules shared by both formats.
func validate(row *Row) error {
	if strings.TrimSpace(row.Email) == "" {
		return rowErr(row.Line, "email is missing")
	}
	if row.Consent == "" {
		row.Consent = custos.ConsentUnknown
	}
	if !row.Consent.Valid() {
		return rowErr(row.Line, "consent must be unknown, subscribed or unsubscribed")
	}
	if err := custos.ValidateAttributes(row.Attributes); err != nil {
		return rowErr(row.Line, "%s", custos.ErrorMessage(err))
	}
	return nil
}

// limitedLines wraps a reader so that no line exceeds MaxLineBytes: CSV
// would otherwise buffer an unterminated quoted field without bound.
type limitedLines struct {
	r       *bufio.Reader
	lineLen int
	err     error
}

var errLineTooLong = errors.New("line too long")

func (l *limitedLines) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			l.lineLen = 0
			continue
		}
		l.lineLen++
		if l.lineLen > MaxLineBytes {
			l.err = errLineTooLong
			return i, nil
		}
	}
	return n, err
}

func skipBOM(r *bufio.Reader) {
	if b, err := r.Peek(3); err == nil && bytes.Equal(b, []byte{0xef, 0xbb, 0xbf}) {
		r.Discard(3)
	}
}

// NewCSV reads a UTF-8 CSV file whose first line is a header (a leading
// byte order mark is skipped; invalid UTF-8 ends the stream with an error
// naming its line). A column named "email" (any case) is required;
// "consent" is optional; every other column becomes a string attribute
// named by its header. Empty cells are left out of the attributes.
// [Options.CSV] reads other encodings.
func NewCSV(r io.Reader) (*Reader, error) { return Options{}.CSV(r) }

func newCSV(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	skipBOM(br)
	ll := &limitedLines{r: br}
	cr := csv.NewReader(ll)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0
	header, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			return nil, custos.Errorf(custos.EINVALID, "line 1: the CSV header is missing")
		}
		return nil, fatal(1, err)
	}
	emailCol, consentCol := -1, -1
	names := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, custos.Errorf(custos.EINVALID, "line 1: column %d has no name", i+1)
		}
		key := strings.ToLower(h)
		if seen[key] {
			return nil, custos.Errorf(custos.EINVALID, "line 1: column %q appears twice", h)
		}
		seen[key] = true
		names[i] = h
		switch key {
		case "email":
			emailCol = i
		case "consent":
			consentCol = i
		}
	}
	if emailCol < 0 {
		return nil, custos.Errorf(custos.EINVALID, "line 1: the CSV header has no email column")
	}
	attrs := map[string]string{}
	lastLine := 1
	return &Reader{next: func() (Row, error) {
		rec, err := cr.Read()
		if err == io.EOF {
			return Row{}, io.EOF
		}
		line := lastLine + 1
		if err == nil {
			line, _ = cr.FieldPos(0)
			lastLine = line
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
				return Row{}, rowErr(pe.StartLine, "row has %d fields, the header has %d", len(rec), len(names))
			}
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			return Row{}, fatal(line, err)
		}
		row := Row{Line: line, Email: rec[emailCol]}
		if consentCol >= 0 {
			row.Consent = custos.Consent(strings.TrimSpace(rec[consentCol]))
		}
		clear(attrs)
		for i, v := range rec {
			if i != emailCol && i != consentCol && v != "" {
				attrs[names[i]] = v
			}
		}
		if len(attrs) > 0 {
			if row.Attributes, err = json.Marshal(attrs); err != nil {
				return Row{}, rowErr(line, "attributes cannot be encoded")
			}
		}
		if err := validate(&row); err != nil {
			return Row{}, err
		}
		return row, nil
	}}, nil
}

func fatal(line int, err error) error {
	var enc *encodingError
	switch {
	case errors.As(err, &enc):
		return enc.domain()
	case errors.Is(err, errLineTooLong):
		return custos.Errorf(custos.EINVALID, "line %d: longer than %d bytes", line, MaxLineBytes)
	case errors.Is(err, csv.ErrQuote), errors.Is(err, csv.ErrBareQuote):
		return custos.Errorf(custos.EINVALID, "line %d: malformed CSV quoting; the rest of the file cannot be read reliably", line)
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return custos.Errorf(custos.EINVALID, "line %d: malformed CSV", line)
	}
	return fmt.Errorf("line %d: read input: %w", line, err)
}

// ndjsonRow is the shape of one NDJSON line.
type ndjsonRow struct {
	Email      *string         `json:"email"`
	Consent    custos.Consent  `json:"consent"`
	Attributes json.RawMessage `json:"attributes"`
}

// NewNDJSON reads one JSON object per line:
// {"email": "...", "consent": "...", "attributes": {...}}. Blank lines are
// skipped but counted. Input must be UTF-8, as for [NewCSV];
// [Options.NDJSON] reads other encodings.
func NewNDJSON(r io.Reader) *Reader {
	rd, _ := Options{}.NDJSON(r) // the zero Options are valid
	return rd
}

func newNDJSON(r io.Reader) *Reader {
	br := bufio.NewReaderSize(r, 256<<10)
	skipBOM(br)
	line := 0
	var buf []byte
	return &Reader{next: func() (Row, error) {
		for {
			buf = buf[:0]
			tooLong := false
			for {
				chunk, err := br.ReadSlice('\n')
				if len(buf)+len(chunk) > MaxLineBytes+2 {
					tooLong = true
				} else {
					buf = append(buf, chunk...)
				}
				if err == bufio.ErrBufferFull {
					continue
				}
				if err == io.EOF {
					if len(buf) == 0 && !tooLong {
						return Row{}, io.EOF
					}
					break
				}
				if err != nil {
					return Row{}, fatal(line+1, err)
				}
				break
			}
			line++
			if tooLong {
				return Row{}, custos.Errorf(custos.EINVALID, "line %d: longer than %d bytes", line, MaxLineBytes)
			}
			b := bytes.TrimSpace(buf)
			if len(b) == 0 {
				continue
			}
			var nr ndjsonRow
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&nr); err != nil {
				var typ *json.UnmarshalTypeError
				switch {
				case errors.As(err, &typ) && typ.Field != "":
					return Row{}, rowErr(line, "field %q has the wrong type", typ.Field)
				case strings.HasPrefix(err.Error(), "json: unknown field"):
					return Row{}, rowErr(line, "unknown field")
				default:
					return Row{}, rowErr(line, "not a JSON object")
				}
			}
			if dec.More() {
				return Row{}, rowErr(line, "more than one JSON value on the line")
			}
			row := Row{Line: line, Consent: nr.Consent}
			if nr.Email != nil {
				row.Email = *nr.Email
			}
			if len(nr.Attributes) > 0 && string(nr.Attributes) != "null" {
				row.Attributes = append(json.RawMessage(nil), nr.Attributes...)
			}
			if err := validate(&row); err != nil {
				return Row{}, err
			}
			return row, nil
		}
	}}
}

package ingest_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/ingest"
)

const bom = "\xef\xbb\xbf"

// readAll returns every row and row error, and the error that ended the
// stream (nil at io.EOF).
func readAll(t *testing.T, r *ingest.Reader) ([]ingest.Row, error) {
	t.Helper()
	var rows []ingest.Row
	for {
		row, err := r.Next()
		if err == io.EOF {
			return rows, nil
		}
		var re *ingest.RowError
		if errors.As(err, &re) {
			continue
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
}

func open(t *testing.T, format, encoding string, data []byte) ([]ingest.Row, error) {
	t.Helper()
	opts := ingest.Options{Encoding: encoding}
	var r *ingest.Reader
	var err error
	// One byte per read: a sequence cut between reads must be held back.
	in := iotest.OneByteReader(bytes.NewReader(data))
	if format == "csv" {
		r, err = opts.CSV(in)
	} else {
		r, err = opts.NDJSON(in)
	}
	if err != nil {
		return nil, err
	}
	return readAll(t, r)
}

func TestEncoding(t *testing.T) {
	// "Zoë Müller" and "café" in Latin-1: ë = 0xeb, ü = 0xfc, é = 0xe9.
	latin1CSV := []byte("email,name\nann@x.test,Ann\nzoe@x.test,Zo\xeb M\xfcller\nbob@x.test,caf\xe9\n")
	latin1NDJSON := []byte("{\"email\":\"ann@x.test\"}\n\n{\"email\":\"zoe@x.test\",\"attributes\":{\"name\":\"Zo\xeb M\xfcller\"}}\n")
	utf8CSV := "email,name\nann@x.test,Ann\nzoe@x.test,Zoë Müller\nbob@x.test,café\n"
	utf8NDJSON := "{\"email\":\"ann@x.test\"}\n\n{\"email\":\"zoe@x.test\",\"attributes\":{\"name\":\"Zoë Müller\"}}\n"
	tests := []struct {
		name, format, encoding string
		data                   []byte
		want                   string // the same input as UTF-8 without a BOM, read with no option
		err                    string // the stream's error, if any
	}{
		{"latin1 csv refused", "csv", "", latin1CSV, "", "line 3: not valid UTF-8"},
		{"latin1 ndjson refused", "ndjson", "", latin1NDJSON, "", "line 3: not valid UTF-8"},
		{"latin1 csv converted", "csv", "latin1", latin1CSV, utf8CSV, ""},
		{"iso-8859-1 csv converted", "csv", "ISO-8859-1", latin1CSV, utf8CSV, ""},
		{"windows-1252 csv converted", "csv", "windows-1252", latin1CSV, utf8CSV, ""},
		{"latin1 ndjson converted", "ndjson", "latin1", latin1NDJSON, utf8NDJSON, ""},
		{"windows-1252 quotes", "csv", "windows-1252", []byte("email,name\na@x.test,\x93hi\x94 \x80\n"), "email,name\na@x.test,“hi” €\n", ""},
		{"utf-8 named", "csv", "utf-8", []byte(utf8CSV), utf8CSV, ""},
		{"bom csv", "csv", "", []byte(bom + utf8CSV), utf8CSV, ""},
		{"bom ndjson", "ndjson", "", []byte(bom + utf8NDJSON), utf8NDJSON, ""},
		{"bom utf-8 named", "csv", "utf8", []byte(bom + utf8CSV), utf8CSV, ""},
		{"invalid on line 1", "csv", "", []byte("email,n\xffame\na@x.test,b\n"), "", "line 1: not valid UTF-8"},
		{"truncated sequence at the end", "ndjson", "", []byte("{\"email\":\"a@x.test\"}\n\xc3"), "", "line 2: not valid UTF-8"},
		{"overlong encoding", "csv", "", []byte("email\na@x.test\n\xc0\xaf@x.test\n"), "", "line 3: not valid UTF-8"},
		{"surrogate half", "csv", "", []byte("email\n\xed\xa0\x80@x.test\n"), "", "line 2: not valid UTF-8"},
		{"line counted through a quoted newline", "csv", "", []byte("email,note\na@x.test,\"two\nlines\"\nb@x.test,\xe9\n"), "", "line 4: not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := open(t, tt.format, tt.encoding, tt.data)
			if tt.err != "" {
				if custos.ErrorCode(err) != custos.EINVALID || !strings.HasPrefix(custos.ErrorMessage(err), tt.err) {
					t.Fatalf("error %v, want EINVALID %q", err, tt.err)
				}
				for _, secret := range []string{"Zo", "M\xfcller", "caf", "x.test", "\xff", "n\xffame"} {
					if strings.Contains(custos.ErrorMessage(err), secret) {
						t.Errorf("error %q holds row content %q", custos.ErrorMessage(err), secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := open(t, tt.format, "", []byte(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 {
				t.Fatal("reference input has no rows")
			}
			if diff := cmp.Diff(want, rows); diff != "" {
				t.Errorf("rows differ from the UTF-8 input's (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodingUnknown(t *testing.T) {
	for _, enc := range []string{"utf-16", "ebcdic", "latin2", " latin1"} {
		if _, err := (ingest.Options{Encoding: enc}).CSV(strings.NewReader("email\n")); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("encoding %q: %v, want EINVALID", enc, err)
		}
		if _, err := (ingest.Options{Encoding: enc}).NDJSON(strings.NewReader("")); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("encoding %q: %v, want EINVALID", enc, err)
		}
	}
}

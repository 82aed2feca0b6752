package ingest_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/ingest"
)

type outcome struct {
	Line  int
	Email string
	Attrs string
	Err   string // row error message, or "FATAL"
}

func drain(t *testing.T, r *ingest.Reader) []outcome {
	t.Helper()
	var out []outcome
	for i := 0; i < 1000; i++ {
		row, err := r.Next()
		if err == io.EOF {
			return out
		}
		var re *ingest.RowError
		if errors.As(err, &re) {
			if re.Line < 1 {
				t.Fatalf("row error without a line: %+v", re)
			}
			out = append(out, outcome{Line: re.Line, Err: re.Message})
			continue
		}
		if err != nil {
			out = append(out, outcome{Err: "FATAL " + custos.ErrorMessage(err)})
			return out
		}
		out = append(out, outcome{Line: row.Line, Email: row.Email, Attrs: string(row.Attributes)})
	}
	t.Fatal("reader did not end")
	return nil
}

func TestCSV(t *testing.T) {
	in := "\ufeffEmail,first_name,consent\r\n" +
		"a@x.test,Ann,subscribed\r\n" +
		",Bob,\r\n" +
		"c@x.test,,maybe\r\n" +
		"\"d@x.test\",\"multi\nline\",\r\n" +
		"e@x.test,Eve\r\n" +
		"f@x.test,,\r\n"
	r, err := ingest.NewCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{
		{Line: 2, Email: "a@x.test", Attrs: `{"first_name":"Ann"}`},
		{Line: 3, Err: "email is missing"},
		{Line: 4, Err: "consent must be unknown, subscribed or unsubscribed"},
		{Line: 5, Email: "d@x.test", Attrs: `{"first_name":"multi\nline"}`},
		{Line: 7, Err: "row has 2 fields, the header has 3"},
		{Line: 8, Email: "f@x.test"},
	}
	if diff := cmp.Diff(want, drain(t, r)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestCSVHeader(t *testing.T) {
	for in, want := range map[string]string{
		"":              "header is missing",
		"name,phone\n":  "no email column",
		"email,Email\n": "appears twice",
		"email,,x\n":    "column 2 has no name",
		"email,\"bad\n": "malformed CSV",
	} {
		_, err := ingest.NewCSV(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) || custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("NewCSV(%q) = %v; want EINVALID containing %q", in, err, want)
		}
	}
}

func TestCSVFatal(t *testing.T) {
	in := "email\na@x.test\n\"b@x.test\n"
	r, _ := ingest.NewCSV(strings.NewReader(in))
	got := drain(t, r)
	if len(got) != 2 || got[0].Email != "a@x.test" || !strings.HasPrefix(got[1].Err, "FATAL line 3") {
		t.Fatalf("got %+v", got)
	}
	long := "email\n" + strings.Repeat("a", ingest.MaxLineBytes+10) + "@x.test\n"
	r, _ = ingest.NewCSV(strings.NewReader(long))
	got = drain(t, r)
	if len(got) != 1 || !strings.Contains(got[0].Err, "longer than") {
		t.Fatalf("long line: got %+v", got)
	}
}

func TestNDJSON(t *testing.T) {
	in := "\ufeff{\"email\":\"a@x.test\",\"attributes\":{\"plan\":\"pro\"}}\r\n" +
		"\n" +
		"{\"email\":1}\n" +
		"{\"email\":\"c@x.test\",\"extra\":true}\n" +
		"not json\n" +
		"{\"email\":\"e@x.test\",\"attributes\":[1]}\n" +
		"{\"email\":\"f@x.test\",\"consent\":\"subscribed\"} {}\n" +
		"{\"consent\":\"subscribed\"}\n" +
		"{\"email\":\"h@x.test\"}"
	want := []outcome{
		{Line: 1, Email: "a@x.test", Attrs: `{"plan":"pro"}`},
		{Line: 3, Err: `field "email" has the wrong type`},
		{Line: 4, Err: "unknown field"},
		{Line: 5, Err: "not a JSON object"},
		{Line: 6, Err: "attributes must be a JSON object"},
		{Line: 7, Err: "more than one JSON value on the line"},
		{Line: 8, Err: "email is missing"},
		{Line: 9, Email: "h@x.test"},
	}
	if diff := cmp.Diff(want, drain(t, ingest.NewNDJSON(strings.NewReader(in)))); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	long := "{\"email\":\"a@x.test\"}\n{\"email\":\"" + strings.Repeat("a", ingest.MaxLineBytes) + "\"}\n"
	got := drain(t, ingest.NewNDJSON(strings.NewReader(long)))
	if len(got) != 2 || !strings.Contains(got[1].Err, "FATAL line 2: longer than") {
		t.Fatalf("long line: %+v", got)
	}
}

func TestGenerateRoundTrip(t *testing.T) {
	for _, format := range []string{"csv", "ndjson"} {
		var buf bytes.Buffer
		if err := ingest.Generate(&buf, format, 500, 7); err != nil {
			t.Fatal(err)
		}
		var r *ingest.Reader
		if format == "csv" {
			var err error
			if r, err = ingest.NewCSV(&buf); err != nil {
				t.Fatal(err)
			}
		} else {
			r = ingest.NewNDJSON(&buf)
		}
		got := drain(t, r)
		seen := map[string]bool{}
		for _, o := range got {
			if o.Err != "" || seen[o.Email] {
				t.Fatalf("%s: bad or duplicate row %+v", format, o)
			}
			seen[o.Email] = true
		}
		if len(got) != 500 {
			t.Fatalf("%s: %d rows, want 500", format, len(got))
		}
	}
}

func fuzzReader(t *testing.T, r *ingest.Reader, data string) {
	// Address-like fields of the input, computed once: row errors must not
	// echo any of them. (Recomputing them per error row made this check
	// quadratic, and the fuzzer stalled on inputs with many bad rows.)
	var addresses []string
	for _, f := range strings.FieldsFunc(data, func(r rune) bool { return strings.ContainsRune(",\n\r\"{}:", r) }) {
		if len(f) >= 6 && strings.Contains(f, "@") {
			addresses = append(addresses, f)
		}
	}
	for i := 0; i < 100000; i++ {
		row, err := r.Next()
		if err == io.EOF {
			return
		}
		var re *ingest.RowError
		if errors.As(err, &re) {
			if re.Line < 1 {
				t.Fatalf("row error without line: %+v", re)
			}
			for _, f := range addresses {
				if strings.Contains(re.Message, f) {
					t.Fatalf("row error %q echoes %q", re.Message, f)
				}
			}
			continue
		}
		if err != nil {
			return
		}
		if row.Line < 1 || row.Email == "" {
			t.Fatalf("bad row %+v", row)
		}
	}
	t.Fatal("reader did not end")
}

func FuzzCSV(f *testing.F) {
	f.Add("email,name\na@x.test,Ann\n")
	f.Add("email\n\"a@x.test\nb\"\n")
	f.Add("Email,consent,x\r\n,subscribed,\r\nb@y.test,maybe,1\r\n")
	f.Add("\xef\xbb\xbfemail,name\na@x.test,Zo\xc3\xab\n")
	f.Add("email,name\na@x.test,Zo\xeb\n")
	f.Fuzz(func(t *testing.T, data string) {
		r, err := ingest.NewCSV(strings.NewReader(data))
		if err == nil {
			fuzzReader(t, r, data)
		}
		fuzzEncodings(t, data, ingest.Options.CSV)
	})
}

func FuzzNDJSON(f *testing.F) {
	f.Add("{\"email\":\"a@x.test\"}\n")
	f.Add("{\"email\":\"a@x.test\",\"attributes\":{\"k\":[1,{}]},\"consent\":\"unknown\"}\n\n{}")
	f.Add("{\"email\":\"secret@x.test\",\"bad\":1}\n")
	f.Add("\xef\xbb\xbf{\"email\":\"a@x.test\"}\n")
	f.Add("{\"email\":\"a@x.test\",\"attributes\":{\"n\":\"\xe9\"}}\n")
	f.Fuzz(func(t *testing.T, data string) {
		fuzzReader(t, ingest.NewNDJSON(strings.NewReader(data)), data)
		fuzzEncodings(t, data, ingest.Options.NDJSON)
	})
}

// fuzzEncodings checks the encoding path on data: a leading BOM changes
// nothing; read as UTF-8, every row is valid UTF-8 and invalid input ends
// the stream with an error naming a line and no content; read as Latin-1,
// nothing is refused for its encoding.
func fuzzEncodings(t *testing.T, data string, open func(ingest.Options, io.Reader) (*ingest.Reader, error)) {
	t.Helper()
	plain := drainFuzz(t, data, open, ingest.Options{})
	if !strings.HasPrefix(data, "\xef\xbb\xbf") {
		if withBOM := drainFuzz(t, "\xef\xbb\xbf"+data, open, ingest.Options{}); !slices.Equal(plain, withBOM) {
			t.Fatalf("a BOM changed the result:\n%q\n%q", plain, withBOM)
		}
	}
	for _, o := range plain {
		if !utf8.ValidString(o) {
			t.Fatalf("read as UTF-8, produced invalid UTF-8: %q", o)
		}
		if msg, ok := strings.CutPrefix(o, "fatal: "); ok && strings.Contains(msg, "not valid UTF-8") {
			if !strings.HasPrefix(msg, "line ") || strings.ContainsFunc(msg, func(r rune) bool { return r >= utf8.RuneSelf }) {
				t.Fatalf("encoding error %q", msg)
			}
		}
	}
	for _, o := range drainFuzz(t, data, open, ingest.Options{Encoding: "latin1"}) {
		if !utf8.ValidString(o) || strings.Contains(o, "not valid UTF-8") {
			t.Fatalf("read as Latin-1: %q", o)
		}
	}
}

// drainFuzz returns what a reader yields, one string per row, row error
// or ending error.
func drainFuzz(t *testing.T, data string, open func(ingest.Options, io.Reader) (*ingest.Reader, error), o ingest.Options) []string {
	t.Helper()
	r, err := open(o, strings.NewReader(data))
	if err != nil {
		return []string{"fatal: " + custos.ErrorMessage(err)}
	}
	var out []string
	for range 100000 {
		row, err := r.Next()
		if err == io.EOF {
			return out
		}
		var re *ingest.RowError
		switch {
		case errors.As(err, &re):
			out = append(out, fmt.Sprintf("row error: %+v", *re))
		case err != nil:
			return append(out, "fatal: "+custos.ErrorMessage(err))
		default:
			out = append(out, fmt.Sprintf("row %d %s %s %s", row.Line, row.Email, row.Consent, row.Attributes))
		}
	}
	t.Fatal("reader did not end")
	return nil
}

func benchmarkFormat(b *testing.B, format string) {
	var buf bytes.Buffer
	if err := ingest.Generate(&buf, format, 100_000, 1); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	rows := 0
	for i := 0; i < b.N; i++ {
		var r *ingest.Reader
		if format == "csv" {
			r, _ = ingest.NewCSV(bytes.NewReader(data))
		} else {
			r = ingest.NewNDJSON(bytes.NewReader(data))
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			rows++
		}
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkCSV(b *testing.B)    { benchmarkFormat(b, "csv") }
func BenchmarkNDJSON(b *testing.B) { benchmarkFormat(b, "ndjson") }

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/custos-dev/custos"
)

// runImport streams a CSV or NDJSON file to the import route, with a
// progress bar on a terminal. Refused rows are listed by line and reason
// code, never by content (they are personal data), and make the exit
// code 3.
func (m *Main) runImport(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("import", `--tenant T --list L [--encoding utf-8|latin1] FILE.csv|FILE.ndjson`, `custos import --tenant tn_… --list ls_… --encoding latin1 contacts.csv`)
	tenant, list := tenantListFlags(fs)
	encoding := fs.String("encoding", "utf-8", "the file's character encoding: utf-8 or latin1")
	pos, err := fs.parse(args, 1, 1, "tenant", "list")
	if err != nil {
		return err
	}
	if *encoding != "utf-8" && *encoding != "latin1" {
		return usagef("custos import: --encoding is utf-8 or latin1, not %q", *encoding)
	}
	format := ""
	switch strings.ToLower(filepath.Ext(pos[0])) {
	case ".csv":
		format = custos.FormatCSV
	case ".ndjson", ".jsonl":
		format = custos.FormatNDJSON
	default:
		return usagef("custos import: %s: the file must end in .csv or .ndjson", pos[0])
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	bar := newProgress(m.Stderr, "import", uint64(st.Size()))
	res, err := a.client().ImportEncoded(ctx, *tenant, *list, format, *encoding, &countingReader{r: f, progress: bar})
	bar.done()
	if err != nil {
		return err
	}
	pr := a.printer()
	if err := pr.one(res, "imported %d contacts in %d batches; %d rows refused", res.Imported, res.Batches, res.Failed); err != nil {
		return err
	}
	if !pr.json {
		for _, e := range res.Errors {
			fmt.Fprintf(m.Stdout, "  line %d: %s\n", e.Line, e.Code)
		}
		if res.Failed > len(res.Errors) {
			fmt.Fprintf(m.Stdout, "  … and %d more\n", res.Failed-len(res.Errors))
		}
	}
	switch {
	case res.Aborted:
		return fmt.Errorf("import stopped: %s (%s); every line up to %d was processed, nothing after it: resume from line %d",
			res.AbortReason, res.AbortCode, res.CommittedThroughLine, res.CommittedThroughLine+1)
	case res.Failed > 0:
		return fmt.Errorf("%w: %d rows refused", errPartial, res.Failed)
	}
	return nil
}

type countingReader struct {
	r        io.Reader
	n        uint64
	progress *progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	c.progress.set(c.n)
	return n, err
}

package main

import (
	"context"
	"os"
)

func (m *Main) runExport(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("export", `--tenant T --list L [--format csv|ndjson] [--out FILE]`, `custos export --tenant tn_… --list ls_… --format ndjson --out contacts.ndjson`)
	tenant, list := tenantListFlags(fs)
	format := fs.String("format", "csv", "export format: csv or ndjson (--json: ndjson)")
	out := fs.String("out", "", "export to this file instead of stdout")
	if _, err := fs.parse(args, 0, 0, "tenant", "list"); err != nil {
		return err
	}
	if a.json {
		*format = "ndjson"
	}
	if *format != "csv" && *format != "ndjson" {
		return usagef("custos export: --format is csv or ndjson, not %q", *format)
	}
	w := m.Stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	_, err := a.client().Export(ctx, *tenant, *list, *format, w)
	return err
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/node"
)

// runBlastRadius runs "custos blast-radius": security staff get a proven
// report of what a principal, key or source network touched, or of who
// touched a tenant. -o writes the report (verify it with custos
// verify-report); --split DIR writes one report per affected tenant, each
// proving its part, with a Markdown and a JSON summary beside them.
//
// The subject key is --key ak_… (the spelling) or --key-id ak_….
// Everywhere else --key is the caller's own API key, and here too when
// its value is a secret (cst_…): a key id is never a credential nor a
// secret a key id, so the value says which is meant, and a secret is
// never sent as the subject of a query.
func (m *Main) runBlastRadius(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("blast-radius", `--principal P | --key K | --source CIDR | --tenant T [--since T] [--until T] [--out FILE] [--split DIR]`,
		`custos blast-radius --principal pr_… --since 2026-01-01T00:00:00Z --out report.json --split reports/`)
	fs.Lookup("key").Usage = "subject: an API key id (ak_…), as --key-id; or, given a secret cst_…, your own API key (default: env CUSTOS_KEY)"
	var q custos.BlastQuery
	fs.StringVar(&q.Principal, "principal", "", "subject: a principal id")
	fs.StringVar(&q.Key, "key-id", "", "subject: an API key id (ak_…); the same as --key ak_…")
	fs.StringVar(&q.Source, "source", "", "subject: an IP address or a network (CIDR)")
	fs.StringVar(&q.Tenant, "tenant", "", "subject: a tenant id: every principal that touched its data")
	since := fs.String("since", "", "start of the window (RFC 3339)")
	until := fs.String("until", "", "end of the window (RFC 3339)")
	out := fs.String("out", "", "write the proven report to FILE")
	fs.StringVar(out, "o", "", "the same as --out")
	split := fs.String("split", "", "write one report per affected tenant, and summary.md and summary.json, to DIR")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	if strings.HasPrefix(a.key, custos.PrefixKey+"_") {
		if q.Key != "" && q.Key != a.key {
			return usagef("custos blast-radius: --key %s and --key-id %s name two subject keys", a.key, q.Key)
		}
		q.Key, a.key = a.key, "" // the caller's own key: CUSTOS_KEY
	}
	for _, t := range []struct {
		s  string
		to *time.Time
	}{{*since, &q.Since}, {*until, &q.Until}} {
		if t.s == "" {
			continue
		}
		tm, err := time.Parse(time.RFC3339Nano, t.s)
		if err != nil {
			return usagef("custos blast-radius: --since and --until take RFC 3339 times")
		}
		*t.to = tm
	}
	if err := q.Validate(); err != nil {
		fs.printUsage(m.Stderr)
		return usagef("custos blast-radius: %s", custos.ErrorMessage(err))
	}
	r, err := a.client().BlastRadius(ctx, q)
	if err != nil {
		return err
	}
	file, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	file = append(file, '\n')
	if *out != "" {
		if err := node.WriteFileAtomic(*out, file); err != nil {
			return err
		}
	}
	summary := blastreport.Summarize(r)
	if *split != "" {
		if err := m.writeSplit(r, file, summary, *split); err != nil {
			return err
		}
	}
	if a.json && *out == "" {
		_, err := m.Stdout.Write(file)
		return err
	}
	fmt.Fprint(m.Stdout, blastreport.Markdown(r, summary))
	return nil
}

// writeSplit writes one report per tenant and the summaries to dir, with
// a progress bar on a terminal.
func (m *Main) writeSplit(r *custos.BlastReport, file []byte, summary []blastreport.TenantSummary, dir string) error {
	parts, err := blastreport.Split(r, file)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bar := newProgress(m.Stderr, "split", uint64(len(parts)))
	n := uint64(0)
	for tenant, p := range parts {
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return err
		}
		if err := node.WriteFileAtomic(filepath.Join(dir, tenant+".json"), append(b, '\n')); err != nil {
			return err
		}
		n++
		bar.set(n)
	}
	bar.done()
	sj, _ := json.MarshalIndent(summary, "", "  ")
	if err := node.WriteFileAtomic(filepath.Join(dir, "summary.json"), append(sj, '\n')); err != nil {
		return err
	}
	return node.WriteFileAtomic(filepath.Join(dir, "summary.md"), []byte(blastreport.Markdown(r, summary)))
}

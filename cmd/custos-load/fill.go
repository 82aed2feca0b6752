package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/node"
)

// kept is what a kept deployment (fill -dir) remembers besides its data
// directory: the keys and ids the load needs, the contact the GET loads
// read first, and how many generated contacts were imported so far (the
// next chunk starts there, so a fill can be resumed). The file sits in
// the deployment's 0700 directory; it holds a load deployment's keys,
// never a real one's.
type kept struct {
	Op       string `json:"op"`
	Admin    string `json:"admin"`
	Tenant   string `json:"tenant"`
	List     string `json:"list"`
	Token    string `json:"token"`
	Contacts int    `json:"contacts"`
	// Subject and Security are the pages run's (custos-load pages): the
	// support engineer its generated entries name for the blast page,
	// and a security engineer's key.
	Subject  string `json:"subject,omitempty"`
	Security string `json:"security,omitempty"`
}

const keptFile = "load.json"

// openKept opens the deployment kept in dir, creating it (node.Init, a
// tenant, its admin, a list and the GET contact) when dir does not hold
// one yet. The node serves on loopback; close it with n.Close.
func openKept(ctx context.Context, dir string) (*node.Node, *instance, *kept, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, err
	}
	d := &deployment{dir: dir, cfg: node.DefaultConfig()}
	d.cfg.DataDir, d.cfg.Addr, d.cfg.Origin = filepath.Join(dir, "data"), "127.0.0.1:0", "custos.load/log"
	var k kept
	b, err := os.ReadFile(filepath.Join(dir, keptFile))
	fresh := errors.Is(err, os.ErrNotExist)
	switch {
	case fresh:
		if d.op, err = node.Init(ctx, d.cfg, "operator@load.test", node.Options{}); err != nil {
			return nil, nil, nil, err
		}
	case err != nil:
		return nil, nil, nil, err
	default:
		if err := json.Unmarshal(b, &k); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", keptFile, err)
		}
		d.op = k.Op
	}
	if d.cfg, err = node.ReadFile(d.cfg); err != nil {
		return nil, nil, nil, err
	}
	n, err := d.startNode(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if !fresh {
		in := &instance{url: n.URL, op: k.Op, admin: k.Admin, tenant: k.Tenant, list: k.List, dir: dir, log: n.Log, vault: n.Vault}
		return n, in, &k, nil
	}
	in, err := setup(n, d.op)
	if err == nil {
		in.dir = dir
		ct, cerr := in.loadContact(ctx)
		if err = cerr; err == nil {
			k = kept{Op: d.op, Admin: in.admin, Tenant: in.tenant, List: in.list, Token: ct.Token}
			err = k.save(dir)
		}
	}
	if err != nil {
		n.Close()
		return nil, nil, nil, err
	}
	return n, in, &k, nil
}

func (k *kept) save(dir string) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, keptFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, keptFile))
}

// fill imports generated contacts into the kept deployment until it holds
// n, in chunks through the real import route (blind indexes, sealing, row
// MACs, audit leaves: what any import writes). Each chunk is generated
// into a pipe as it is sent, so no file of the data set is written.
func fill(ctx context.Context, in *instance, k *kept, dir string, n, chunk int, out io.Writer) error {
	api := client.New(in.url, client.WithKey(in.admin), client.WithHTTPClient(&http.Client{}))
	t0, start := time.Now(), k.Contacts
	for k.Contacts < n {
		m := min(chunk, n-k.Contacts)
		pr, pw := io.Pipe()
		go func(from int) { pw.CloseWithError(ingest.GenerateFrom(pw, "csv", from, m, 1)) }(k.Contacts)
		c0 := time.Now()
		res, err := api.Import(ctx, in.tenant, in.list, "csv", pr)
		pr.Close()
		if err != nil {
			return fmt.Errorf("import contacts %d–%d: %w", k.Contacts, k.Contacts+m, err)
		}
		// A chunk a killed fill had begun is partly there already: its
		// rows come back as duplicates (the generator writes no invalid
		// row), and the chunk counts as done.
		if res.Aborted || res.Imported+res.Failed != m {
			return fmt.Errorf("import contacts %d–%d incomplete: %+v", k.Contacts, k.Contacts+m, res)
		}
		if res.Failed > 0 {
			fmt.Fprintf(out, "%d of contacts %d–%d were there already (a chunk a killed fill had begun)\n", res.Failed, k.Contacts, k.Contacts+m)
		}
		k.Contacts += m
		if err := k.save(dir); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d contacts (+%d in %s, %.0f/s), peak RSS %d MiB\n", k.Contacts, m,
			time.Since(c0).Round(time.Millisecond), float64(m)/time.Since(c0).Seconds(), peakRSS()>>20)
	}
	if el := time.Since(t0); k.Contacts > start {
		fmt.Fprintf(out, "filled %d contacts in %s: %.0f contacts/s\n", k.Contacts-start, el.Round(time.Second), float64(k.Contacts-start)/el.Seconds())
	}
	return nil
}

func runFill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	dir := fs.String("dir", "/tmp/mem/10m", "directory of the kept deployment (created if absent, resumed if present)")
	n := fs.Int("n", 10_000_000, "contacts the deployment should hold")
	chunk := fs.Int("chunk", 500_000, "contacts per import request")
	fs.Parse(args)
	ctx := context.Background()
	nd, in, k, err := openKept(ctx, *dir)
	if err != nil {
		return err
	}
	defer nd.Close()
	return fill(ctx, in, k, *dir, *n, *chunk, os.Stdout)
}

// sampleTokens returns up to n tokens of the list's contacts, spread over
// the whole table (the GETs of a large deployment should not all hit one
// hot page).
func sampleTokens(ctx context.Context, nd *node.Node, list string, n int) ([]string, error) {
	rows, err := nd.DB.Read.QueryContext(ctx, `SELECT token FROM contacts WHERE list_id = $1 ORDER BY token LIMIT $2`, list, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runGetKept is `get -dir DIR`: audited GETs of contacts spread over a kept
// deployment, with CPU per request (this process: server and client) and
// peak RSS, so a 100k and a 10M deployment compare in one command each.
func runGetKept(dir string, levels string, dur time.Duration, spread int) error {
	ctx := context.Background()
	nd, in, k, err := openKept(ctx, dir)
	if err != nil {
		return err
	}
	defer nd.Close()
	// As custos serve does (this process is server and client at once).
	if lim, ok := nd.Config.Memory.GoLimit(); ok && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(lim)
	}
	tokens := []string{k.Token}
	if spread > 1 {
		if tokens, err = sampleTokens(ctx, nd, k.List, spread); err != nil {
			return err
		}
	}
	fmt.Printf("audited GET over %d contacts of a %d-contact deployment (%s), %s per run\n", len(tokens), k.Contacts, dir, dur)
	fmt.Printf("%-8s %-4s %10s %10s %10s %8s %12s\n", "target", "c", "req/s", "p50", "p99", "errors", "CPU/req")
	for _, f := range strings.Split(levels, ",") {
		var c int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &c); err != nil || c < 1 {
			return fmt.Errorf("bad concurrency %q", f)
		}
		cpu0 := cpuTime()
		r := loadTokens([]string{in.url}, in.admin, in.tenant, tokens, c, dur, nil)
		cpu := cpuTime() - cpu0
		r.print("custos", c)
		if n := r.rps * dur.Seconds(); n > 0 {
			fmt.Printf("%-8s %-4d %56s\n", "cpu", c, (time.Duration(float64(cpu) / n)).Round(100*time.Nanosecond))
		}
	}
	fmt.Printf("peak RSS %d MiB\n", peakRSS()>>20)
	return nil
}

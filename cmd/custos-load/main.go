// Command custos-load is custos's load generator. It starts custos
// in-process on 127.0.0.1 (real SQLite in WAL with synchronous=FULL, real
// Tink keys, real signed log, real HTTP over loopback) and measures:
//
//	custos-load get     audited single-contact GET at several concurrencies,
//	                    side by side with a bare net/http handler returning a
//	                    body of the same size, in the same run
//	custos-load import  a streamed import of generated contacts: contacts/s
//	                    and peak RSS; with -reads C, audited GETs at c=C
//	                    idle and during the import, in the same run
//	custos-load nodes   audited GETs and log appends on SQLite, and on 1 and
//	                    3 nodes over one PostgreSQL, side by side
//	custos-load alert   access → alert delivered to a local webhook receiver,
//	                    under benign audited reads at half the maximum rate
//	custos-load detect  the detector beside 512 appenders: does it keep up?
//	custos-load fill    a kept deployment (-dir, default /tmp/mem/10m) filled
//	                    through the import route to -n contacts (resumable);
//	                    `get -dir` then reads it: CPU per request, peak RSS
//
// Figures and the commands that reproduce them are in docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/internal/procstat"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/server"
	"github.com/custos-dev/custos/vault"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: custos-load get|import|nodes|alert|detect|fill|pages [flags]")
		os.Exit(2)
	}
	if p := os.Getenv("CUSTOS_LOAD_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	var err error
	switch os.Args[1] {
	case "get":
		err = runGet(os.Args[2:])
	case "import":
		err = runImport(os.Args[2:])
	case "nodes":
		err = runNodes(os.Args[2:])
	case "alert":
		err = runAlert(os.Args[2:])
	case "detect":
		err = runDetect(os.Args[2:])
	case "fill":
		err = runFill(os.Args[2:])
	case "pages":
		err = runPages(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "custos-load:", err)
		os.Exit(1)
	}
}

// instance is custos running in this process on a loopback port, with a
// tenant, a tenant admin key and a list.
type instance struct {
	url, op, admin, tenant, list string
	dir                          string // a directory for the run's files
	vault                        *vault.Vault
	log                          *audit.Log
	close                        func()
}

// deployment is a data directory initialised by node.Init (KEK, log keys,
// the first operator) with its database: SQLite in the directory, or the
// PostgreSQL URL that several nodes share. The directory is a fresh
// temporary one; remove deletes it.
type deployment struct {
	cfg node.Config
	op  string // the operator's key
	dir string // the temporary directory holding the data directory
}

func newDeployment(ctx context.Context, db string) (*deployment, error) {
	dir, err := os.MkdirTemp("", "custos-load-")
	if err != nil {
		return nil, err
	}
	d := &deployment{dir: dir, cfg: node.DefaultConfig()}
	d.cfg.DataDir, d.cfg.Addr, d.cfg.Origin, d.cfg.DB = filepath.Join(dir, "data"), "127.0.0.1:0", "custos.load/log", db
	if d.op, err = node.Init(ctx, d.cfg, "operator@load.test", node.Options{}); err == nil {
		d.cfg, err = node.ReadFile(d.cfg)
	}
	if err != nil {
		d.remove()
		return nil, err
	}
	return d, nil
}

// remove deletes the deployment's directory; its nodes must be closed.
func (d *deployment) remove() { os.RemoveAll(d.dir) }

// startNode opens the deployment as one custos node serving on loopback.
func (d *deployment) startNode(ctx context.Context) (*node.Node, error) {
	// CUSTOS_LOAD_MEMORY, a JSON memory section (custos.json's), sizes the
	// node and, as custos serve does, its Go heap's soft limit.
	if m := os.Getenv("CUSTOS_LOAD_MEMORY"); m != "" {
		if err := json.Unmarshal([]byte(m), &d.cfg.Memory); err != nil {
			return nil, fmt.Errorf("CUSTOS_LOAD_MEMORY: %w", err)
		}
		if lim, ok := d.cfg.Memory.GoLimit(); ok && os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(lim)
		}
	}
	// A load generator measures throughput: the per-key and per-source
	// limits (issue 13) would cap it at their rate, so they are off here.
	n, err := node.Open(ctx, d.cfg, node.Options{Server: func(c *server.Config) { c.KeyRate, c.SourceRate = rate.Inf, rate.Inf }})
	if err != nil {
		return nil, err
	}
	if err := n.Listen(d.cfg.Addr); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// start runs one custos on SQLite in a temporary directory (in.dir);
// in.close stops it and removes the directory.
func start(ctx context.Context) (*instance, error) {
	d, err := newDeployment(ctx, "")
	if err != nil {
		return nil, err
	}
	n, err := d.startNode(ctx)
	if err != nil {
		d.remove()
		return nil, err
	}
	in, err := setup(n, d.op)
	if err != nil {
		n.Close()
		d.remove()
		return nil, err
	}
	in.dir = d.dir
	in.close = func() {
		n.Close()
		d.remove()
	}
	return in, nil
}

// setup creates, with the operator's key, a tenant, its admin key and a
// list through n's API.
func setup(n *node.Node, opKey string) (*instance, error) {
	ctx := context.Background()
	in := &instance{url: n.URL, op: opKey, log: n.Log, vault: n.Vault}
	t, admin, err := in.newTenant(ctx, "Load", "admin@load.test")
	if err != nil {
		return nil, err
	}
	l, err := in.as(admin).CreateList(ctx, t.ID, "load")
	if err != nil {
		return nil, err
	}
	in.admin, in.tenant, in.list = admin, t.ID, l.ID
	return in, nil
}

// as returns a client of the instance that authenticates with key ("":
// none). Setup calls are few; the measured loops use [load].
func (in *instance) as(key string) *client.Client {
	return client.New(in.url, client.WithKey(key))
}

// newTenant creates a tenant whose first admin, at adminEmail, enrolls;
// it returns the tenant and the admin's key.
func (in *instance) newTenant(ctx context.Context, name, adminEmail string) (*custos.Tenant, string, error) {
	t, err := in.as(in.op).CreateTenant(ctx, custos.CreateTenantRequest{Name: name, AdminEmail: adminEmail})
	if err != nil {
		return nil, "", err
	}
	key, err := in.enroll(ctx, t.AdminEnrollment.ID)
	return t.Tenant, key, err
}

// enroll sets up a key with an enrollment's secret, read from the mail the
// vault composes for the holder (this tool plays every holder).
func (in *instance) enroll(ctx context.Context, enrollmentID string) (string, error) {
	mail, err := in.vault.EnrollmentMail(ctx, enrollmentID)
	if err != nil {
		return "", err
	}
	if mail == nil {
		return "", fmt.Errorf("enrollment %s is not issued", enrollmentID)
	}
	k, err := in.as("").Enroll(ctx, custos.EnrollRequest{Secret: custos.FindEnrollmentSecret(mail.Body)})
	if err != nil {
		return "", err
	}
	return k.Secret, nil
}

// loadContact adds the contact the GET loads read, with the attributes
// that give its answer the size docs/benchmarks.md quotes.
func (in *instance) loadContact(ctx context.Context) (*custos.Contact, error) {
	return in.as(in.admin).CreateContact(ctx, in.tenant, in.list, custos.CreateContactRequest{
		Email: "load.test@example.test", Attributes: json.RawMessage(`{"first_name":"Lo","plan":"pro"}`), Consent: "subscribed"})
}

func runGet(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	dur := fs.Duration("d", 5*time.Second, "duration of each run")
	levels := fs.String("c", "1,16,64", "concurrency levels")
	dir := fs.String("dir", "", "read a kept deployment (custos-load fill -dir) instead of a fresh one with one contact; no bare baseline")
	spread := fs.Int("spread", 10000, "with -dir: GETs go to this many of its contacts in turn")
	withBare := fs.Bool("bare", true, "run the bare baseline too (false: custos only, for a profile of custos alone)")
	fs.Parse(args)
	if *dir != "" {
		return runGetKept(*dir, *levels, *dur, *spread)
	}
	ctx := context.Background()
	in, err := start(ctx)
	if err != nil {
		return err
	}
	defer in.close()
	ct, err := in.loadContact(ctx)
	if err != nil {
		return err
	}
	// The baseline returns a body of the same size, from the same kind of
	// listener, with nothing behind it, and is driven by the same client
	// code: it answers any path.
	sample, err := json.Marshal(ct)
	if err != nil {
		return err
	}
	sample = append(sample, '\n') // as the server's json.Encoder writes it
	bareURL, stopBare, err := bare(sample)
	if err != nil {
		return err
	}
	defer stopBare()

	fmt.Printf("audited GET of one contact vs bare net/http, %d-byte JSON body, %s per run, GOMAXPROCS=%s\n",
		len(sample), *dur, os.Getenv("GOMAXPROCS"))
	fmt.Printf("%-8s %-4s %10s %10s %10s %8s\n", "target", "c", "req/s", "p50", "p99", "errors")
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("bad concurrency %q", f)
		}
		if !*withBare {
			load([]string{in.url}, in.admin, in.tenant, ct.Token, n, *dur).print("custos", n)
			continue
		}
		b := load([]string{bareURL}, "", in.tenant, ct.Token, n, *dur)
		a := load([]string{in.url}, in.admin, in.tenant, ct.Token, n, *dur)
		b.print("bare", n)
		a.print("custos", n)
		fmt.Printf("%-8s %-4d %9.0f%%\n", "ratio", n, 100*a.rps/b.rps)
	}
	return nil
}

func bare(body []byte) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

func (r result) print(name string, c int) {
	fmt.Printf("%-8s %-4d %10.0f %10s %10s %8d\n", name, c, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors)
}

// load runs c workers, spread over the servers at bases, each reading one
// contact again and again with a [client.Repeat] for d, and returns
// throughput and latency percentiles over every request. The clients share
// one transport with a keep-alive connection per worker and never retry:
// the generator's own cost per request is the transport's.
func load(bases []string, key, tenant, token string, c int, d time.Duration) result {
	return loadUntil(bases, key, tenant, token, c, d, nil)
}

// loadUntil is [load] that also stops when done is closed.
func loadUntil(bases []string, key, tenant, token string, c int, d time.Duration, done <-chan struct{}) result {
	return loadTokens(bases, key, tenant, []string{token}, c, d, done)
}

// loadTokens is [loadUntil] reading the contacts of tokens in turn: each
// worker prepares a [client.Repeat] for up to perWorker of them.
func loadTokens(bases []string, key, tenant string, tokens []string, c int, d time.Duration, done <-chan struct{}) result {
	const perWorker = 256
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	clients := make([]*client.Client, len(bases))
	for i, b := range bases {
		clients[i] = client.New(b, client.WithKey(key), client.WithHTTPClient(hc), client.WithRetries(0, 0))
	}
	var errs atomic.Int64
	lat := make([][]time.Duration, c)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var gets []*client.Repeat
			for j := range min(perWorker, len(tokens)) {
				gets = append(gets, clients[i%len(clients)].RepeatContact(context.Background(), tenant, tokens[(i*perWorker+j)%len(tokens)]))
			}
			for n := 0; time.Now().Before(deadline); n++ {
				get := gets[n%len(gets)]
				select {
				case <-done:
					return
				default:
				}
				t0 := time.Now()
				if err := get.Do(); err != nil {
					errs.Add(1)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := result{errors: errs.Load()}
	if len(all) > 0 {
		r.rps = float64(len(all)) / elapsed.Seconds()
		r.p50 = all[len(all)*50/100]
		r.p99 = all[len(all)*99/100]
	}
	return r
}

func runImport(args []string) error {
	fs := flag.NewFlagSet("import", flag.ExitOnError)
	n := fs.Int("n", 1_000_000, "contacts to import")
	format := fs.String("format", "csv", "csv or ndjson")
	reads := fs.Int("reads", 0, "if > 0: audited GETs by this many workers, idle first (for -d), then for the whole import")
	dur := fs.Duration("d", 5*time.Second, "with -reads: duration of the idle GET run")
	dbURL := fs.String("db", "", "PostgreSQL URL: import into one node on a fresh schema of it (created and dropped) instead of SQLite")
	fs.Parse(args)
	ctx := context.Background()
	var in *instance
	var err error
	if *dbURL == "" {
		in, err = start(ctx)
	} else {
		in, err = startPostgres(ctx, *dbURL)
	}
	if err != nil {
		return err
	}
	defer in.close()
	// Generate the file first so generation is not timed.
	path := filepath.Join(in.dir, "contacts."+*format)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := ingest.Generate(f, *format, *n, 1); err != nil {
		return err
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	f.Seek(0, io.SeekStart)
	defer f.Close()
	var token string
	var idle result
	if *reads > 0 {
		ct, err := in.loadContact(ctx)
		if err != nil {
			return err
		}
		token = ct.Token
		idle = load([]string{in.url}, in.admin, in.tenant, token, *reads, *dur)
	}
	// No client timeout: a million contacts take longer than the default.
	api := client.New(in.url, client.WithKey(in.admin), client.WithHTTPClient(&http.Client{}))
	rssBefore := peakRSS()
	done := make(chan struct{})
	during := make(chan result, 1)
	if *reads > 0 {
		go func() { during <- loadUntil([]string{in.url}, in.admin, in.tenant, token, *reads, 24*time.Hour, done) }()
	}
	t0 := time.Now()
	res, err := api.Import(ctx, in.tenant, in.list, *format, f)
	el := time.Since(t0)
	close(done)
	if *reads > 0 {
		d := <-during
		fmt.Printf("%-8s %-4s %10s %10s %10s %8s\n", "GET", "c", "req/s", "p50", "p99", "errors")
		idle.print("idle", *reads)
		d.print("import", *reads)
		fmt.Printf("%-8s %-4d %9.0f%%\n", "ratio", *reads, 100*d.rps/idle.rps)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if res.Aborted || res.Imported != *n {
		return fmt.Errorf("import incomplete: %+v", res)
	}
	fmt.Printf("imported %d contacts (%s, %.0f MiB) in %s: %.0f contacts/s; %d batches; peak RSS %d MiB (before import %d MiB)\n",
		res.Imported, *format, float64(size)/(1<<20), el.Round(time.Millisecond), float64(res.Imported)/el.Seconds(), res.Batches, peakRSS()>>20, rssBefore>>20)
	return nil
}

// peakRSS returns this process's peak resident set size in bytes (0
// without /proc).
func peakRSS() int64 {
	n, _ := procstat.PeakRSS()
	return n
}

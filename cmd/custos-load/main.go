// Command custos-load is custos's load generator. It starts custos
// in-process on 127.0.0.1 (real SQLite in WAL with synchronous=FULL, real
// Tink keys, real signed log, real HTTP over loopback) and measures:
//
//	custos-load get     audited single-contact GET at several concurrencies,
//	                    side by side with a bare net/http handler returning a
//	                    body of the same size, in the same run
//	custos-load import  a streamed import of generated contacts: contacts/s
//	                    and peak RSS
//	custos-load nodes   audited GETs and log appends on SQLite, and on 1 and
//	                    3 nodes over one PostgreSQL, side by side
//	custos-load alert   access → alert delivered to a local webhook receiver,
//	                    under benign audited reads at half the maximum rate
//	custos-load detect  the detector beside 512 appenders: does it keep up?
//
// Figures and the commands that reproduce them are in docs/benchmarks.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/server"
	"github.com/custos-dev/custos/vault"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: custos-load get|import|nodes|alert|detect [flags]")
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
	vault                        *vault.Vault
	log                          *audit.Log
	close                        func()
}

// deployment is a data directory initialised by node.Init (KEK, log keys,
// the first operator) with its database: SQLite in the directory, or the
// PostgreSQL URL that several nodes share.
type deployment struct {
	cfg node.Config
	op  string // the operator's key
}

func newDeployment(ctx context.Context, dir, db string) (*deployment, error) {
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin, cfg.DB = filepath.Join(dir, "data"), "127.0.0.1:0", "custos.load/log", db
	op, err := node.Init(ctx, cfg, "operator@load.test", node.Options{})
	if err != nil {
		return nil, err
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		return nil, err
	}
	return &deployment{cfg: cfg, op: op}, nil
}

// startNode opens the deployment as one custos node serving on loopback.
func (d *deployment) startNode(ctx context.Context) (*node.Node, error) {
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

// start runs one custos on SQLite in dir.
func start(ctx context.Context, dir string) (*instance, error) {
	d, err := newDeployment(ctx, dir, "")
	if err != nil {
		return nil, err
	}
	n, err := d.startNode(ctx)
	if err != nil {
		return nil, err
	}
	in, err := setup(n, d.op)
	if err != nil {
		n.Close()
		return nil, err
	}
	in.close = func() { n.Close() }
	return in, nil
}

// setup creates, with the operator's key, a tenant, its admin key and a
// list through n's API.
func setup(n *node.Node, opKey string) (*instance, error) {
	in := &instance{url: n.URL, op: opKey, log: n.Log, vault: n.Vault}
	c := &client{base: in.url, http: http.DefaultClient}
	t, admin, err := in.newTenant(c, "Load", "admin@load.test")
	if err != nil {
		return nil, err
	}
	k := struct{ Secret string }{admin}
	var l custos.List
	if err := c.json(k.Secret, "POST", "/v1/tenants/"+t.ID+"/lists", map[string]string{"name": "load"}, &l); err != nil {
		return nil, err
	}
	in.admin, in.tenant, in.list = k.Secret, t.ID, l.ID
	return in, nil
}

// newTenant creates a tenant whose first admin, at adminEmail, enrolls;
// it returns the tenant and the admin's key.
func (in *instance) newTenant(c *client, name, adminEmail string) (*custos.Tenant, string, error) {
	var t struct {
		custos.Tenant
		AdminEnrollment custos.Enrollment `json:"admin_enrollment"`
	}
	if err := c.json(in.op, "POST", "/v1/tenants", map[string]string{"name": name, "admin_email": adminEmail}, &t); err != nil {
		return nil, "", err
	}
	key, err := in.enroll(c, t.AdminEnrollment.ID)
	return &t.Tenant, key, err
}

// enroll sets up a key with an enrollment's secret, read from the mail the
// vault composes for the holder (this tool plays every holder).
func (in *instance) enroll(c *client, enrollmentID string) (string, error) {
	mail, err := in.vault.EnrollmentMail(context.Background(), enrollmentID)
	if err != nil {
		return "", err
	}
	if mail == nil {
		return "", fmt.Errorf("enrollment %s is not issued", enrollmentID)
	}
	secret := custos.FindEnrollmentSecret(mail.Body)
	var k struct{ Secret string }
	if err := c.json("", "POST", "/v1/enroll", map[string]any{"secret": secret}, &k); err != nil {
		return "", err
	}
	return k.Secret, nil
}

type client struct {
	base string
	http *http.Client
}

func (c *client) json(key, method, path string, in, out any) error {
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	return json.Unmarshal(body, out)
}

func runGet(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	dur := fs.Duration("d", 5*time.Second, "duration of each run")
	levels := fs.String("c", "1,16,64", "concurrency levels")
	fs.Parse(args)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "custos-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	in, err := start(ctx, dir)
	if err != nil {
		return err
	}
	defer in.close()
	c := &client{base: in.url, http: http.DefaultClient}
	var ct custos.Contact
	if err := c.json(in.admin, "POST", "/v1/tenants/"+in.tenant+"/lists/"+in.list+"/contacts",
		map[string]any{"email": "load.test@example.test", "attributes": map[string]string{"first_name": "Lo", "plan": "pro"}, "consent": "subscribed"}, &ct); err != nil {
		return err
	}
	target := in.url + "/v1/tenants/" + in.tenant + "/contacts/" + ct.Token
	// The baseline returns a body of the same size, from the same kind of
	// listener, with nothing behind it.
	sample, err := fetch(http.DefaultClient, target, in.admin)
	if err != nil {
		return err
	}
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
		b := load([]string{bareURL}, "", n, *dur)
		a := load([]string{target}, in.admin, n, *dur)
		b.print("bare", n)
		a.print("custos", n)
		fmt.Printf("%-8s %-4d %9.0f%%\n", "ratio", n, 100*a.rps/b.rps)
	}
	return nil
}

func fetch(c *http.Client, url, key string) ([]byte, error) {
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET: status %d", resp.StatusCode)
	}
	return b, err
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
	return "http://" + ln.Addr().String() + "/", func() { srv.Close() }, nil
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

func (r result) print(name string, c int) {
	fmt.Printf("%-8s %-4d %10.0f %10s %10s %8d\n", name, c, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors)
}

// load runs c workers against url for d and returns throughput and
// latency percentiles over every request.
func load(urls []string, key string, c int, d time.Duration) result {
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var errs atomic.Int64
	lat := make([][]time.Duration, c)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", urls[i%len(urls)], nil)
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
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
	fs.Parse(args)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "custos-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	in, err := start(ctx, dir)
	if err != nil {
		return err
	}
	defer in.close()
	// Generate the file first so generation is not timed.
	path := filepath.Join(dir, "contacts."+*format)
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
	ctype := map[string]string{"csv": "text/csv", "ndjson": "application/x-ndjson"}[*format]
	req, _ := http.NewRequest("POST", in.url+"/v1/tenants/"+in.tenant+"/lists/"+in.list+"/import", f)
	req.Header.Set("Authorization", "Bearer "+in.admin)
	req.Header.Set("Content-Type", ctype)
	req.ContentLength = size
	rssBefore := peakRSS()
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	el := time.Since(t0)
	var res custos.ImportResult
	if err := json.Unmarshal(body, &res); err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("import: status %d: %s", resp.StatusCode, body)
	}
	if res.Aborted || res.Imported != *n {
		return fmt.Errorf("import incomplete: %+v", res)
	}
	fmt.Printf("imported %d contacts (%s, %.0f MiB) in %s: %.0f contacts/s; %d batches; peak RSS %d MiB (before import %d MiB)\n",
		res.Imported, *format, float64(size)/(1<<20), el.Round(time.Millisecond), float64(res.Imported)/el.Seconds(), res.Batches, peakRSS()>>20, rssBefore>>20)
	return nil
}

// peakRSS returns this process's peak resident set size (VmHWM) in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

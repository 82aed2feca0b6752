package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
)

// runNodes measures audited GETs (req/s, p50, p99) and durable log appends
// on SQLite and on 1 and 3 nodes over one PostgreSQL, in one run. In
// queued mode an append is acknowledged once durable in the queue;
// "integrated/s" is the rate at which the sequencer moved them into the
// tree, from the first append to the last integration.
func runNodes(args []string) error {
	fs := flag.NewFlagSet("nodes", flag.ExitOnError)
	dbURL := fs.String("db", os.Getenv("CUSTOS_TEST_POSTGRES"), "PostgreSQL URL (default $CUSTOS_TEST_POSTGRES); a schema is created and dropped")
	dur := fs.Duration("d", 5*time.Second, "duration of each run")
	conc := fs.Int("c", 64, "concurrent HTTP clients")
	appenders := fs.Int("appenders", 512, "concurrent log appenders")
	fs.Parse(args)
	if *dbURL == "" {
		return errors.New("nodes: give -db postgres://… or set CUSTOS_TEST_POSTGRES")
	}
	ctx := context.Background()
	fmt.Printf("audited GET at c=%d and log appends with %d appenders, %s per run\n", *conc, *appenders, *dur)
	fmt.Printf("%-16s %10s %10s %10s %12s %14s\n", "store", "GET req/s", "p50", "p99", "appends/s", "integrated/s")

	in, err := start(ctx)
	if err != nil {
		return err
	}
	r, err := measure(ctx, []string{in.url}, in, []*audit.Log{in.log}, *conc, *appenders, *dur, false)
	in.close()
	if err != nil {
		return err
	}
	r.print("sqlite")

	for _, n := range []int{1, 3} {
		r, err := pgRun(ctx, *dbURL, n, *conc, *appenders, *dur)
		if err != nil {
			return err
		}
		r.print(fmt.Sprintf("postgres %d node", n))
	}
	return nil
}

type nodesResult struct {
	get                result
	appends, integrate float64
}

func (r nodesResult) print(name string) {
	integ := "-"
	if r.integrate > 0 {
		integ = fmt.Sprintf("%.0f", r.integrate)
	}
	fmt.Printf("%-16s %10.0f %10s %10s %12.0f %14s\n", name, r.get.rps, r.get.p50.Round(time.Microsecond), r.get.p99.Round(time.Microsecond), r.appends, integ)
}

// startPostgres runs one custos node on a fresh schema of the database
// at base; in.close stops it and drops the schema.
func startPostgres(ctx context.Context, base string) (*instance, error) {
	schemaURL, drop, err := newSchema(ctx, base)
	if err != nil {
		return nil, err
	}
	d, err := newDeployment(ctx, schemaURL)
	if err != nil {
		drop()
		return nil, err
	}
	n, err := d.startNode(ctx)
	if err != nil {
		d.remove()
		drop()
		return nil, err
	}
	in, err := setup(n, d.op)
	if err != nil {
		n.Close()
		d.remove()
		drop()
		return nil, err
	}
	in.dir = d.dir
	in.close = func() {
		n.Close()
		d.remove()
		drop()
	}
	return in, nil
}

func pgRun(ctx context.Context, base string, n, conc, appenders int, dur time.Duration) (nodesResult, error) {
	schemaURL, drop, err := newSchema(ctx, base)
	if err != nil {
		return nodesResult{}, err
	}
	defer drop()
	d, err := newDeployment(ctx, schemaURL)
	if err != nil {
		return nodesResult{}, err
	}
	defer d.remove()
	var nodes []*node.Node
	defer func() {
		for _, nd := range nodes {
			nd.Close()
		}
	}()
	for range n {
		nd, err := d.startNode(ctx)
		if err != nil {
			return nodesResult{}, err
		}
		nodes = append(nodes, nd)
	}
	in, err := setup(nodes[0], d.op)
	if err != nil {
		return nodesResult{}, err
	}
	var urls []string
	var logs []*audit.Log
	for _, nd := range nodes {
		urls, logs = append(urls, nd.URL), append(logs, nd.Log)
	}
	return measure(ctx, urls, in, logs, conc, appenders, dur, true)
}

// measure runs the GET load over urls, then appends over logs. With a
// queue (queued: the nodes share PostgreSQL) it also waits for the
// sequencer to integrate.
func measure(ctx context.Context, urls []string, in *instance, logs []*audit.Log, conc, appenders int, dur time.Duration, queued bool) (nodesResult, error) {
	ct, err := in.loadContact(ctx)
	if err != nil {
		return nodesResult{}, err
	}
	var r nodesResult
	r.get = load(urls, in.admin, in.tenant, ct.Token, conc, dur)
	if r.get.errors > 0 {
		return r, fmt.Errorf("%d GET errors", r.get.errors)
	}

	l := audit.Leaf{Actor: "pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ActorKind: "tenant_admin", KeyID: "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Source: "127.0.0.1", Action: "contact.read", Tenant: "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Tokens: []string{"ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"}, Outcome: "ok", RequestID: "rq_aaaaaaaaaaaaaaaaaaaaaaaaaa"}
	var done atomic.Int64
	var failed atomic.Int64
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lg := logs[w%len(logs)]
			for time.Now().Before(deadline) {
				if _, err := lg.Append(ctx, audit.Entry{Leaf: l}); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	r.appends = float64(done.Load()) / time.Since(t0).Seconds()
	if failed.Load() > 0 {
		return r, fmt.Errorf("%d appends failed", failed.Load())
	}
	if queued {
		// Sync returns once every entry queued so far, by any node, is in
		// the tree.
		if err := logs[0].Sync(ctx); err != nil {
			return r, err
		}
		r.integrate = float64(done.Load()) / time.Since(t0).Seconds()
	}
	return r, nil
}

// newSchema creates a fresh schema in the database at base and returns a
// URL that uses it, and a function that drops it.
func newSchema(ctx context.Context, base string) (string, func(), error) {
	var b [6]byte
	rand.Read(b[:])
	schema := "custos_load_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		return "", nil, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`)
		admin.Close()
	}, nil
}

package e2e_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/storetest"
)

// TestThreeNodesLeaderKilled runs three `custos serve` processes over one
// PostgreSQL, spreads load over all three, and kills the sequencer with
// SIGKILL mid-load. Another node must take over; afterwards every request
// a client saw answered is in the log exactly once, every stored contact
// has its create leaf, and `custos log verify` passes.
func TestThreeNodesLeaderKilled(t *testing.T) {
	url := storetest.NewSchema(t, storetest.PostgresURL(t))
	dir := t.TempDir()
	op := initData(t, dir, "--db", url)
	nodes := []*proc{serve(t, dir, "--db", url), serve(t, dir, "--db", url), serve(t, dir, "--db", url)}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.kill()
		}
	})
	hc := &http.Client{Timeout: 10 * time.Second}
	a := api{url: nodes[0].url, hc: hc}
	var tenant struct{ ID string }
	a.must(t, op, "POST", "/v1/tenants", map[string]string{"name": "Nodes", "admin_email": "admin@nodes.test"}, &tenant)
	k := struct{ Secret string }{a.enrolled(t, dir, "admin@nodes.test")}
	var list struct{ ID string }
	a.must(t, k.Secret, "POST", "/v1/tenants/"+tenant.ID+"/lists", map[string]string{"name": "l"}, &list)

	leader := waitSequencer(t, hc, nodes, -1)

	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		created []string
		seq     atomic.Int64
		perNode [3]atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 18; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := w % 3
			a := api{url: nodes[node].url, hc: hc}
			for ctx.Err() == nil {
				n := seq.Add(1)
				if n%3 == 2 {
					mu.Lock()
					var tok string
					if len(created) > 0 {
						tok = created[int(n)%len(created)]
					}
					mu.Unlock()
					if tok != "" {
						status, id, _, err := a.do(ctx, k.Secret, "GET", "/v1/tenants/"+tenant.ID+"/contacts/"+tok, nil)
						if err == nil && status < 500 {
							mu.Lock()
							acked[id] = "read"
							mu.Unlock()
							perNode[node].Add(1)
						}
						continue
					}
				}
				status, id, body, err := a.do(ctx, k.Secret, "POST", "/v1/tenants/"+tenant.ID+"/lists/"+list.ID+"/contacts",
					map[string]string{"email": fmt.Sprintf("node.%d@example.test", n)})
				if err != nil || status >= 500 {
					continue
				}
				var c struct{ Token string }
				mu.Lock()
				acked[id] = "create"
				if status == 201 && json.Unmarshal(body, &c) == nil {
					created = append(created, c.Token)
				}
				mu.Unlock()
				perNode[node].Add(1)
			}
		}()
	}
	time.Sleep(time.Second)
	nodes[leader].kill()
	killedAt := time.Now()
	next := waitSequencer(t, hc, nodes, leader)
	t.Logf("node %d took over %v after node %d was killed", next, time.Since(killedAt).Round(time.Millisecond), leader)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()

	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Wait for the new sequencer to integrate everything queued.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM audit_queue`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still queued 30 s after the load stopped", n)
		}
	}
	logged := readLog(t, db)
	for id, c := range logged {
		if c > 1 && id != "" {
			t.Errorf("request %s is in the log %d times", id, c)
		}
	}
	missing := 0
	for id, what := range acked {
		if logged[id] != 1 {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged %s request %s is not in the log", what, id)
			}
		}
	}
	stored := len(storedContacts(t, db, dir))
	for i := range perNode {
		if perNode[i].Load() == 0 {
			t.Errorf("node %d answered no request: the load was not spread", i)
		}
	}
	t.Logf("%d acknowledged requests (per node %d/%d/%d), %d contacts, %d leaves", len(acked), perNode[0].Load(), perNode[1].Load(), perNode[2].Load(), stored, len(logged))
	t.Log(logVerify(t, dir, "--db", url))
}

// waitSequencer returns the node (other than not) that reports being the
// log's sequencer, waiting up to 15 s.
func waitSequencer(t *testing.T, hc *http.Client, nodes []*proc, not int) int {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for i, n := range nodes {
			if i == not {
				continue
			}
			resp, err := hc.Get(n.url + "/healthz")
			if err != nil {
				continue
			}
			var h struct{ Sequencer bool }
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Sequencer {
				return i
			}
		}
	}
	t.Fatal("no node became the sequencer within 15 s")
	return -1
}

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

	"github.com/custos-dev/custos"
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
	tenant, err := newClient(nodes[0].url, op).CreateTenant(context.Background(), custos.CreateTenantRequest{Name: "Nodes", AdminEmail: "admin@nodes.test"})
	if err != nil {
		t.Fatal(err)
	}
	admin := enrolled(t, nodes[0].url, dir, "admin@nodes.test")
	list, err := newClient(nodes[0].url, admin).CreateList(context.Background(), tenant.ID, "l")
	if err != nil {
		t.Fatal(err)
	}

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
			c := newClient(nodes[node].url, admin)
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
						if id, _, ok := answered(ctx, func(ctx context.Context) error {
							_, err := c.Contact(ctx, tenant.ID, tok)
							return err
						}); ok {
							mu.Lock()
							acked[id] = "read"
							mu.Unlock()
							perNode[node].Add(1)
						}
						continue
					}
				}
				var ct *custos.Contact
				id, status, ok := answered(ctx, func(ctx context.Context) (err error) {
					ct, err = c.CreateContact(ctx, tenant.ID, list.ID, custos.CreateContactRequest{Email: fmt.Sprintf("node.%d@example.test", n)})
					return err
				})
				if !ok {
					continue
				}
				mu.Lock()
				acked[id] = "create"
				if status == 201 && ct != nil {
					created = append(created, ct.Token)
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
	awaitQueueDrained(t, db)
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
	stored := len(storedContacts(t, db, dir, true))
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

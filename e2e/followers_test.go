package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
)

// TestFollowersNoFalseAlarms (issue 13, finding 7): a PostgreSQL follower
// served the newest checkpoint but proved against the older tree it had
// last refreshed, so `custos audit pull` refused honest logs (32 false
// alarms in 60 pulls). Here three nodes take load, the sequencer is killed
// twice (and replaced), and a tenant runs `custos audit pull` 200 times,
// round-robin over the live nodes, keeping its state throughout: not one
// may be refused.
func TestFollowersNoFalseAlarms(t *testing.T) {
	slow(t)
	url := storetest.NewSchema(t, storetest.PostgresURL(t))
	dir := t.TempDir()
	op := initData(t, dir, "--db", url)
	var mu sync.Mutex
	nodes := []*proc{serve(t, dir, "--db", url), serve(t, dir, "--db", url), serve(t, dir, "--db", url)}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range nodes {
			n.kill()
		}
	})
	live := func() []*proc {
		mu.Lock()
		defer mu.Unlock()
		return append([]*proc(nil), nodes...)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	ctx0 := context.Background()
	tenant, err := newClient(nodes[0].url, op).CreateTenant(ctx0, custos.CreateTenantRequest{Name: "Pulls", AdminEmail: "admin@pulls.test"})
	if err != nil {
		t.Fatal(err)
	}
	admin := enrolled(t, nodes[0].url, dir, "admin@pulls.test")
	list, err := newClient(nodes[0].url, admin).CreateList(ctx0, tenant.ID, "l")
	if err != nil {
		t.Fatal(err)
	}

	// Load on every node: each write is an entry of the tenant's feed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				ns := live()
				newClient(ns[w%len(ns)].url, admin).CreateContact(ctx, tenant.ID, list.ID,
					custos.CreateContactRequest{Email: fmt.Sprintf("f.%d@example.test", n.Add(1))})
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	// Kill the sequencer twice, a node taking its place each time.
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for range 2 {
			time.Sleep(3 * time.Second)
			ns := live()
			leader := waitSequencer(t, hc, ns, -1)
			ns[leader].kill()
			waitSequencer(t, hc, ns, leader)
			fresh := serve(t, dir, "--db", url)
			mu.Lock()
			nodes[leader] = fresh
			mu.Unlock()
		}
	}()

	const pulls = 200
	state := filepath.Join(t.TempDir(), "pull.json")
	var refused, failed, done int
	for i := 0; done < pulls; i++ {
		ns := live()
		node := ns[i%len(ns)]
		cmd := exec.Command(binary(t), "audit", "pull", "--tenant", tenant.ID, "--log-key", filepath.Join(dir, "log.pub"), "--state", state)
		cmd.Env = append(cmd.Environ(), "CUSTOS_SERVER="+node.url, "CUSTOS_KEY="+admin)
		out, err := cmd.CombinedOutput()
		if err != nil && strings.Contains(string(out), "REFUSED") {
			refused++
			if refused <= 3 {
				t.Errorf("pull %d from %s refused an honest log:\n%s", done, node.url, out)
			}
		} else if err != nil {
			select {
			case <-node.done: // the node was killed under the pull: not an answer
				continue
			default:
			}
			failed++
			if failed <= 3 {
				t.Logf("pull %d from %s failed (not a refusal): %v\n%s", done, node.url, err, out)
			}
		}
		done++
	}
	<-killed
	cancel()
	wg.Wait()
	t.Logf("%d pulls, %d false alarms, %d other failures, %d writes", pulls, refused, failed, n.Load())
	if refused > 0 {
		t.Fatalf("%d of %d pulls raised a false tamper alarm", refused, pulls)
	}
	if failed > pulls/20 {
		t.Fatalf("%d of %d pulls failed", failed, pulls)
	}
}

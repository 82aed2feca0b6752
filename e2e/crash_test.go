package e2e_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"github.com/custos-dev/custos/internal/storetest"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// TestCrashUnderLoad kills a serving custos with SIGKILL at random moments
// while clients create and read contacts (and a staff principal is
// refused). After every crash the server restarts on the same data. At the
// end:
//   - every request a client saw answered (any status but 5xx) is in the log;
//   - every contact acknowledged as created exists;
//   - every contact in the database has its contact.create leaf (no change
//     without its record);
//   - `custos log verify` passes.
func TestCrashUnderLoad(t *testing.T) {
	slow(t)
	t.Run("sqlite", func(t *testing.T) { crashUnderLoad(t, "") })
	t.Run("postgres", func(t *testing.T) { crashUnderLoad(t, storetest.NewSchema(t, storetest.PostgresURL(t))) })
}

// crashUnderLoad is the crash test on SQLite (pg empty) or on the
// PostgreSQL database at pg: 20 kill -9s (issue 13's acceptance).
func crashUnderLoad(t *testing.T, pg string) {
	const rounds = 20
	dir := t.TempDir()
	var dbArgs []string
	if pg != "" {
		dbArgs = []string{"--db", pg}
	}
	op := initData(t, dir, dbArgs...)

	p := serve(t, dir, dbArgs...)
	a := api{url: p.url, hc: &http.Client{Timeout: 10 * time.Second}}
	var tenant struct{ ID string }
	a.must(t, op, "POST", "/v1/tenants", map[string]string{"name": "Crash", "admin_email": "admin@crash.test"}, &tenant)
	admin := a.enrolled(t, dir, "admin@crash.test")
	a.must(t, op, "POST", "/v1/principals", map[string]string{"kind": "staff_support", "name": "staff", "email": "staff@crash.test"}, nil)
	staff := a.enrolled(t, dir, "staff@crash.test")
	var list struct{ ID string }
	a.must(t, admin, "POST", "/v1/tenants/"+tenant.ID+"/lists", map[string]string{"name": "l"}, &list)

	var (
		mu      sync.Mutex
		acked   = map[string]string{} // request id -> what
		created []string              // tokens acknowledged as created
		seq     atomic.Int64
	)
	ack := func(id, what string) {
		mu.Lock()
		acked[id] = what
		mu.Unlock()
	}
	for round := 0; round < rounds; round++ {
		if round > 0 {
			p = serve(t, dir, dbArgs...)
		}
		a := api{url: p.url, hc: &http.Client{Timeout: 10 * time.Second}}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 24; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					switch n := seq.Add(1); n % 4 {
					case 0, 1:
						email := fmt.Sprintf("crash.%d@example.test", n)
						status, id, body, err := a.do(ctx, admin, "POST", "/v1/tenants/"+tenant.ID+"/lists/"+list.ID+"/contacts", map[string]string{"email": email})
						if err != nil || status >= 500 {
							continue
						}
						ack(id, "create")
						var c struct{ Token string }
						if status == 201 && json.Unmarshal(body, &c) == nil {
							mu.Lock()
							created = append(created, c.Token)
							mu.Unlock()
						}
					case 2:
						mu.Lock()
						var tok string
						if len(created) > 0 {
							tok = created[rand.IntN(len(created))]
						}
						mu.Unlock()
						if tok == "" {
							continue
						}
						status, id, _, err := a.do(ctx, admin, "GET", "/v1/tenants/"+tenant.ID+"/contacts/"+tok, nil)
						if err == nil && status < 500 {
							ack(id, "read")
						}
					case 3:
						status, id, _, err := a.do(ctx, staff, "GET", "/v1/tenants/"+tenant.ID+"/lists/"+list.ID+"/contacts", nil)
						if err == nil && status < 500 {
							if status != 403 {
								t.Errorf("staff read answered %d, want 403", status)
							}
							ack(id, "staff-denied")
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
	}

	driver, dsn := "sqlite", "file:"+filepath.Join(dir, "custos.db")+"?mode=ro"
	if pg != "" {
		driver, dsn = "pgx", pg
	}
	db, err := sql.Open(driver, dsn)
	if err == nil && pg != "" {
		// Queued mode: an acknowledged entry is durable in audit_queue and
		// enters the tree when a node leads again. Start one and wait for
		// the queue to drain before reading the tree.
		p := serve(t, dir, dbArgs...)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM audit_queue`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d queued entries never entered the tree", n)
			}
		}
		p.kill()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logged := readLog(t, db)
	missing := 0
	for id, what := range acked {
		if logged[id] == 0 {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged %s request %s is not in the log", what, id)
			}
		}
	}
	stored := storedContacts(t, db, dir)
	for _, tok := range created {
		if !stored[tok] {
			t.Errorf("contact %s was acknowledged as created but is not stored", tok)
		}
	}
	t.Logf("%d crashes; %d acknowledged requests (%d missing); %d contacts; %d leaves", rounds, len(acked), missing, len(stored), len(logged))
	if len(acked) < rounds*10 {
		t.Errorf("only %d acknowledged requests over %d rounds: the load did not run", len(acked), rounds)
	}
	t.Log(logVerify(t, dir, dbArgs...))
}

package e2e_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/storetest"
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
	ctx := context.Background()
	tenant, err := newClient(p.url, op).CreateTenant(ctx, custos.CreateTenantRequest{Name: "Crash", AdminEmail: "admin@crash.test"})
	if err != nil {
		t.Fatal(err)
	}
	admin := enrolled(t, p.url, dir, "admin@crash.test")
	if _, err := newClient(p.url, op).CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: custos.KindStaffSupport, Name: "staff", Email: "staff@crash.test"}); err != nil {
		t.Fatal(err)
	}
	staff := enrolled(t, p.url, dir, "staff@crash.test")
	list, err := newClient(p.url, admin).CreateList(ctx, tenant.ID, "l")
	if err != nil {
		t.Fatal(err)
	}

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
		asAdmin, asStaff := newClient(p.url, admin), newClient(p.url, staff)
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
						var c *custos.Contact
						id, status, ok := answered(ctx, func(ctx context.Context) (err error) {
							c, err = asAdmin.CreateContact(ctx, tenant.ID, list.ID, custos.CreateContactRequest{Email: email})
							return err
						})
						if !ok {
							continue
						}
						ack(id, "create")
						if status == 201 && c != nil {
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
						if id, _, ok := answered(ctx, func(ctx context.Context) error {
							_, err := asAdmin.Contact(ctx, tenant.ID, tok)
							return err
						}); ok {
							ack(id, "read")
						}
					case 3:
						if id, status, ok := answered(ctx, func(ctx context.Context) error {
							_, err := asStaff.ListContacts(ctx, tenant.ID, list.ID, client.PageOptions{})
							return err
						}); ok {
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
		awaitQueueDrained(t, db)
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
	stored := storedContacts(t, db, dir, false)
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

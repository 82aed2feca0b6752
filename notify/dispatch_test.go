package notify_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/store"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// recorder is a sink that fails its first `fail` deliveries.
type recorder struct {
	name string
	mu   sync.Mutex
	fail int
	got  []string
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Deliver(_ context.Context, m *notify.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("receiver down")
	}
	r.got = append(r.got, m.Topic)
	return nil
}

func (r *recorder) topics() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.got, " ")
}

func enqueue(t *testing.T, db *store.DB, now time.Time, topics ...string) {
	t.Helper()
	tx, err := db.Write.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		if err := notify.Enqueue(context.Background(), tx, &notify.Message{Topic: topic, To: []string{notify.ToTenantAdmins}, Text: topic}, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestRetriesUntilDelivered: a sink that is down gets the message later,
// after backoff, in order; a sink that took it is not sent it again; a
// rolled-back transaction announces nothing.
func TestRetriesUntilDelivered(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	now := time.Now()
	clock := func() time.Time { return now }
	up, down := &recorder{name: "up"}, &recorder{name: "down", fail: 2}
	d := &notify.Dispatcher{DB: db.Write, Sinks: []notify.Sink{up, down}, Now: clock}

	enqueue(t, db, now, "one", "two")
	tx, _ := db.Write.Begin()
	if err := notify.Enqueue(ctx, tx, &notify.Message{Topic: "rolled-back"}, now); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()

	if n, err := d.Flush(ctx); err != nil || n != 0 {
		t.Fatalf("first pass: %d delivered, %v; want 0 (one sink down)", n, err)
	}
	if n, _ := d.Flush(ctx); n != 0 {
		t.Fatalf("a pass before the backoff ran out delivered %d", n)
	}
	if p, _ := notify.Pending(ctx, db.Read); p != 2 {
		t.Fatalf("pending = %d, want 2", p)
	}
	now = now.Add(time.Second) // the first backoff; the sink is back
	if n, err := d.Flush(ctx); err != nil || n != 2 {
		t.Fatalf("after backoff: %d delivered, %v; want 2", n, err)
	}
	if up.topics() != "one two" || down.topics() != "one two" {
		t.Fatalf("up got %q, down got %q; want each message once, in order", up.topics(), down.topics())
	}
	if p, _ := notify.Pending(ctx, db.Read); p != 0 {
		t.Fatalf("pending = %d after delivery", p)
	}
}

// TestOnlyTheActiveNodeDelivers: a dispatcher whose node is not the
// sequencer leaves the outbox alone.
func TestOnlyTheActiveNodeDelivers(t *testing.T) {
	db := storetest.Open(t)
	enqueue(t, db, time.Now(), "x")
	s := &recorder{name: "s"}
	var active sync.Mutex
	isActive := false
	d := &notify.Dispatcher{DB: db.Write, Sinks: []notify.Sink{s}, Poll: 5 * time.Millisecond,
		Active: func() bool { active.Lock(); defer active.Unlock(); return isActive }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	if s.topics() != "" {
		t.Fatal("an inactive node delivered")
	}
	active.Lock()
	isActive = true
	active.Unlock()
	d.Kick()
	for i := 0; s.topics() == "" && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if s.topics() != "x" {
		t.Fatalf("after becoming active: %q", s.topics())
	}
}

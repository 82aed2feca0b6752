package notify_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/notify"
)

// Regression tests for defects found in review.

// Undecodable rows are set aside: 100 of them do not starve the message
// behind them.
func TestUndecodableRowsDoNotBlockTheOutbox(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	now := time.Now()
	for i := range 100 {
		if _, err := db.Write.Exec(`INSERT INTO outbox (id, topic, payload, created_at, next_at) VALUES ($1, 'x', '{', $2, $2)`,
			fmt.Sprintf("nt_bad%03d", i), now.Add(-time.Minute).UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(t, db, now, "grant.created")
	r := &recorder{name: "r"}
	d := &notify.Dispatcher{DB: db.Write, Sinks: []notify.Sink{r}, Now: func() time.Time { return now.Add(time.Hour) }}
	for range 5 {
		if _, err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if r.topics() != "grant.created" {
		t.Fatalf("a valid message behind 100 corrupt rows was never delivered (sink got %q)", r.topics())
	}
}

// Two sinks with one name would share a delivery record (one marked as
// having what only the other got): the dispatcher refuses to deliver.
func TestSinksSharingANameAreRefused(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	now := time.Now()
	enqueue(t, db, now, "alert")
	hook := &recorder{name: "log"} // e.g. a webhook configured with "name": "log"
	d := &notify.Dispatcher{DB: db.Write, Sinks: []notify.Sink{notify.LogSink{Logger: slog.New(slog.DiscardHandler)}, hook}, Now: func() time.Time { return now }}
	if _, err := d.Flush(ctx); err == nil {
		t.Fatal("a dispatcher with two sinks named log delivered")
	}
	if n, _ := notify.Pending(ctx, db.Write); n != 1 {
		t.Fatal("the message left the outbox")
	}
}

// When the outcome of a delivery cannot be saved, the message waits for
// the backoff instead of going out at every poll (no pager storm while the
// database refuses writes).
func TestUnsavedDeliveryWaitsForTheBackoff(t *testing.T) {
	if storetest.Engine() != storetest.SQLite {
		t.Skip("uses an SQLite trigger")
	}
	ctx := context.Background()
	db := storetest.Open(t)
	now := time.Now()
	enqueue(t, db, now, "alert")
	if _, err := db.Write.Exec(`CREATE TRIGGER no_update BEFORE UPDATE ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	r := &recorder{name: "pager"}
	d := &notify.Dispatcher{DB: db.Write, Sinks: []notify.Sink{r}, Now: func() time.Time { return now }}
	for range 5 {
		d.Flush(ctx) // five polls, 200 ms apart in production, same instant here
	}
	// The attempt is recorded before it is made: with writes refused, it is
	// not made at all; it is never made twice within the backoff.
	if got := r.topics(); strings.Count(got, "alert") > 1 {
		t.Fatalf("the pager received %q within one instant, want at most one delivery before the backoff", got)
	}
}

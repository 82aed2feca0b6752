package vault

import (
	"context"
	"database/sql"
	"testing"
)

// RewrapStep runs one step of a started rewrap from its stored cursor, as
// a rewrap cut short by a crash leaves it: batch rows at most. It reports
// whether the step ended a pass.
func RewrapStep(ctx context.Context, v *Vault, tenant string, batch int) (bool, error) {
	r, err := v.loadRotation(ctx, tenant)
	if err != nil {
		return false, err
	}
	cur, _, err := v.resumeCursor(ctx, tenant, r)
	if err != nil {
		return false, err
	}
	p := v.prepareRewrap(ctx, tenant, cur, batch)
	if p.err != nil || p.end {
		return p.end, p.err
	}
	_, err = v.commitPrepared(ctx, tenant, p, &rewrapPass{})
	return false, err
}

// RewrapStepBetween is RewrapStep with between run after the step's rows
// are read and sealed again and before they are committed: the window in
// which a request may change them.
func RewrapStepBetween(ctx context.Context, v *Vault, tenant string, batch int, between func()) (rewrapped int64, err error) {
	r, err := v.loadRotation(ctx, tenant)
	if err != nil {
		return 0, err
	}
	cur, _, err := v.resumeCursor(ctx, tenant, r)
	if err != nil {
		return 0, err
	}
	p := v.prepareRewrap(ctx, tenant, cur, batch)
	if p.err != nil || p.end {
		return 0, p.err
	}
	between()
	var pass rewrapPass
	_, err = v.commitPrepared(ctx, tenant, p, &pass)
	return pass.rewrapped, err
}

// BulkPauses is how many times bulk work paused to share the time.
func BulkPauses(v *Vault) int64 { return v.bulkPauses.Load() }

// RewrapInTokenOrder makes every rewrap pass go in token order, as on
// PostgreSQL or for a small tenant of a large SQLite table, until the
// test ends.
func RewrapInTokenOrder(t interface{ Cleanup(func()) }) {
	rewrapTokenOrder.Store(true)
	t.Cleanup(func() { rewrapTokenOrder.Store(false) })
}

// EchoEveryUpdate makes every real update of a list echoed by an update
// of one of its canaries or reserved tokens until t ends.
func EchoEveryUpdate(t interface{ Cleanup(func()) }) {
	echoEveryUpdate.Store(true)
	t.Cleanup(func() { echoEveryUpdate.Store(false) })
}

// OnBulkTx calls fn with each bulk commit's transaction (bulkcache.go)
// until t ends.
func OnBulkTx(t testing.TB, fn func(context.Context, *sql.Tx)) {
	testHookBulkTx = fn
	t.Cleanup(func() { testHookBulkTx = nil })
}

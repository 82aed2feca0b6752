package console

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-dev/custos"
)

// TestBlastJobsBounded: one run per requester and query (asking again
// while it runs finds the same run), at most maxBlastJobs at once — the
// next is refused with too_many, starts nothing, and is the error the
// page records — and a forgotten run frees its place.
func TestBlastJobsBounded(t *testing.T) {
	var b blastJobs
	release := make(chan struct{})
	slow := func(context.Context) (*custos.BlastReport, error) {
		<-release
		return &custos.BlastReport{}, nil
	}
	ctx := context.Background()
	var jobs []*blastJob
	for i := range maxBlastJobs {
		jobs = append(jobs, b.run(ctx, string(rune('a'+i)), slow))
	}
	if again := b.run(ctx, "a", func(context.Context) (*custos.BlastReport, error) {
		t.Error("a second run for the same requester and query")
		return nil, nil
	}); again != jobs[0] {
		t.Fatal("asking again while it runs did not find the same run")
	}
	busy := b.run(ctx, "e", func(context.Context) (*custos.BlastReport, error) {
		t.Error("a run past the bound started")
		return nil, nil
	})
	if _, done, err := busy.wait(ctx, 0); !done || !errors.Is(err, errBlastBusy) || custos.ErrorCode(err) != custos.ETOOMANY {
		t.Fatalf("the run past the bound: done %v, %v", done, err)
	}
	if _, done, _ := jobs[1].wait(ctx, 0); done {
		t.Fatal("a slow run reported done")
	}
	close(release)
	for _, j := range jobs {
		if rep, done, err := j.wait(ctx, 5*time.Second); !done || err != nil || rep == nil {
			t.Fatalf("a run after release: %v %v %v", rep, done, err)
		}
	}
	b.forget("a", jobs[0])
	if j := b.run(ctx, "a", slow); j == jobs[0] {
		t.Fatal("a forgotten run was found again")
	}
}

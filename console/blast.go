package console

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/vault"
)

// The blast radius (docs/blast-radius.md) for security staff: what a
// principal, a key or a network touched, or who touched a tenant, per
// tenant, with the proven report and each tenant's part to download —
// the files custos verify-report checks offline. Each run is the API's
// GET /v1/blast-radius, authorized and recorded as such.

type blastView struct {
	Query url.Values
	Asked bool
	// Running: the report is still being computed (the page reloads
	// itself); Elapsed is for how long.
	Running bool
	Elapsed string
	Report  *custos.BlastReport
	Summary []blastreport.TenantSummary
	// Download is the report's download link (its query from parsed
	// values, encoded: trusted as a URL by the template).
	Download template.URL
}

// blastQuery reads the subject and the window from the URL, as the API
// route does, and checks it.
func blastQuery(v url.Values) (custos.BlastQuery, error) {
	q, err := custos.ParseBlastQuery(v)
	if err != nil {
		return q, err
	}
	return q, q.Validate()
}

// blastParams keeps only the query's own parameters, for links.
func blastParams(v url.Values) url.Values {
	out := url.Values{}
	for _, k := range []string{"principal", "key", "source", "tenant", "since", "until"} {
		if x := v.Get(k); x != "" {
			out.Set(k, x)
		}
	}
	return out
}

func (c *Console) blast(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	params := blastParams(r.URL.Query())
	v := blastView{Query: params}
	if len(params) > 0 {
		q, err := blastQuery(params)
		if err != nil {
			return c.vault.Reject(r.Context(), custos.ActionBlastRadius, "", err)
		}
		if err := custos.Authorize(custos.RequestFromContext(r.Context()), custos.ActionBlastRadius, ""); err != nil {
			// Refused as the API refuses it, recorded, and no run starts.
			_, err := c.vault.BlastRadius(r.Context(), q)
			return err
		}
		key := principal(r.Context()).ID + "\x00" + params.Encode()
		job := c.blasts.run(r.Context(), key, func(ctx context.Context) (*custos.BlastReport, error) {
			return c.vault.BlastRadius(ctx, q)
		})
		rep, done, err := job.wait(r.Context(), c.blastWait)
		if done {
			c.blasts.forget(key, job)
		}
		switch {
		case !done:
			v.Running, v.Elapsed = true, time.Since(job.started).Round(time.Second).String()
			w.Header().Set("Refresh", "1")
		case errors.Is(err, errBlastBusy):
			// Refused before any run: recorded here (a run's own refusals
			// are recorded by the vault).
			return c.vault.Reject(r.Context(), custos.ActionBlastRadius, "", err)
		case err != nil:
			return err
		default:
			v.Asked, v.Report, v.Summary, v.Download = true, rep, blastreport.Summarize(rep), template.URL("/ui/security/blast/report?"+params.Encode())
		}
	}
	c.render(w, r, http.StatusOK, "blast", c.view(r, s, "Blast radius", "blast", v))
	return nil
}

// A blast-radius report is the subject's entries read, opened and proven:
// about 15 µs an entry, so 1.5 s for a principal with 100 000 (docs/
// benchmarks.md (av)). The page does not hold its request that long: it
// starts the report as a job of its own, waits for it up to blastWait,
// and otherwise answers at once with a progress page that reloads itself
// every second (a Refresh header: no script) until the report is there.
// The job is the API's BlastRadius in the requester's identity — the
// same authorization, and its one blast_radius.read entry when it ends.
// A finished job is shown once, to the principal who asked for it, and
// forgotten; asking again runs it again (and records it again).

// DefaultBlastWait is how long the blast page waits for its report before
// it answers with the progress page.
const DefaultBlastWait = 100 * time.Millisecond

// maxBlastJobs bounds the reports computed at once (each holds the
// subject's entries in memory); a page asking for more is told to retry.
const maxBlastJobs = 4

// blastJobKeep is how long a finished job waits to be shown before it is
// dropped (its requester closed the page).
const blastJobKeep = 10 * time.Minute

// errBlastBusy refuses a report while maxBlastJobs are being computed.
var errBlastBusy = custos.Errorf(custos.ETOOMANY, "%d blast-radius reports are being computed: try again in a moment", maxBlastJobs)

type blastJobs struct {
	mu   sync.Mutex
	jobs map[string]*blastJob // by requester and query
}

type blastJob struct {
	started time.Time
	done    chan struct{}
	rep     *custos.BlastReport
	err     error
}

// run returns the job for key, starting it with f if there is none. The
// job's context keeps the request's identity but not its cancellation
// (the page that started it is answered before it ends), bounded by
// blastJobKeep.
func (b *blastJobs) run(ctx context.Context, key string, f func(context.Context) (*custos.BlastReport, error)) *blastJob {
	b.mu.Lock()
	defer b.mu.Unlock()
	if j := b.jobs[key]; j != nil {
		return j
	}
	j := &blastJob{started: time.Now(), done: make(chan struct{})}
	if b.jobs == nil {
		b.jobs = make(map[string]*blastJob)
	}
	running := 0
	for _, x := range b.jobs {
		select {
		case <-x.done:
		default:
			running++
		}
	}
	if running >= maxBlastJobs {
		j.err = errBlastBusy
		close(j.done)
		return j
	}
	b.jobs[key] = j
	go func() {
		jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), blastJobKeep)
		defer cancel()
		j.rep, j.err = f(jctx)
		close(j.done)
		// Forget it if nobody comes for it.
		time.AfterFunc(blastJobKeep, func() { b.forget(key, j) })
	}()
	return j
}

// forget drops key's job if it is still j.
func (b *blastJobs) forget(key string, j *blastJob) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.jobs[key] == j {
		delete(b.jobs, key)
	}
}

// wait waits up to d for the job; done is false if it is still running.
// A finished job is the caller's (see blastJobs).
func (j *blastJob) wait(ctx context.Context, d time.Duration) (*custos.BlastReport, bool, error) {
	select {
	case <-j.done:
		return j.rep, true, j.err
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-j.done:
		return j.rep, true, j.err
	case <-t.C:
		return nil, false, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// blastReport downloads the proven report (or, with part=TENANT, that
// tenant's part of it: what the tenant can check alone).
func (c *Console) blastReport(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	q, err := blastQuery(r.URL.Query())
	if err != nil {
		return c.vault.Reject(r.Context(), custos.ActionBlastRadius, "", err)
	}
	rep, err := c.vault.BlastRadius(r.Context(), q)
	if err != nil {
		return err
	}
	file, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	file = append(file, '\n')
	name := "blast-radius.json"
	if part := r.URL.Query().Get("part"); part != "" {
		parts, err := blastreport.Split(rep, file)
		if err != nil {
			return err
		}
		p, ok := parts[part]
		if !ok || !custos.ValidID(custos.PrefixTenant, part) {
			return custos.Errorf(custos.ENOTFOUND, "the report names no such tenant")
		}
		if file, err = json.MarshalIndent(p, "", "  "); err != nil {
			return err
		}
		file, name = append(file, '\n'), "blast-radius-"+part+".json"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(file)
	return err
}

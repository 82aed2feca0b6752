package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
)

// Log is what a [Cosigner] needs of the log; *audit.Log has it.
type Log interface {
	Checkpoint(ctx context.Context) (*audit.Checkpoint, error)
	ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (tlog.TreeProof, error)
	AddCosignature(ctx context.Context, size uint64, witness, line string) error
	CosignedSizes(ctx context.Context) (map[string]audit.Cosigned, error)
	CosignedCheckpoint(ctx context.Context, witnesses []string, quorum int) (*audit.Checkpoint, error)
	IsLeader() bool
}

// Cosigner sends the log's newest checkpoint to each witness and stores
// the cosignatures. It runs beside the log, never in its path: an append
// does not wait for a witness, and a witness that is down, slow or
// refusing only makes its own lag grow. A witness that lags is caught up
// with one request — a consistency proof from its size to the newest
// checkpoint — however many checkpoints it missed.
type Cosigner struct {
	Log       Log
	Witnesses []Witness
	// Quorum is how many of Witnesses a checkpoint needs before [Cosigner.Served]
	// serves it (custos.json log.witness_quorum; default all of them).
	Quorum int
	// Client makes the requests (default: a client with a 10 s timeout).
	Client *http.Client
	// Interval is how often each witness's loop looks for a new checkpoint
	// (default 100 ms); MaxBackoff bounds the wait after a failure
	// (default 1 min, doubling from 1 s).
	Interval   time.Duration
	MaxBackoff time.Duration
	Logger     *slog.Logger

	logVerifier note.Verifier
	mu          sync.Mutex
	states      []*state
}

// state is one witness's, as the cosigner knows it.
type state struct {
	w        Witness
	v        note.Verifier
	size     uint64 // the size the witness has, as far as we know: the next request's old size
	ours     uint64 // the largest size we hold the witness's cosignature of
	known    bool   // ours is a stored cosignature's size
	cosigned time.Time
	failures int
	lastErr  string
}

// Status is one witness's lag, for /metrics and /healthz. It holds no
// data of the log's entries.
type Status struct {
	Name string `json:"name"`
	// Size is the size of the newest checkpoint the witness cosigned;
	// Behind is how many entries the newest signed checkpoint has beyond it.
	Size   uint64 `json:"size"`
	Behind uint64 `json:"behind"`
	// LastCosigned is when its last cosignature arrived (zero: none
	// stored).
	LastCosigned time.Time `json:"last_cosigned,omitzero"`
	// Failures counts the requests that failed since the last success;
	// Error is the last failure.
	Failures int    `json:"failures"`
	Error    string `json:"error,omitempty"`
}

// New checks the witnesses' configuration and returns a cosigner for the
// log lg, whose checkpoints logV verifies.
func New(lg Log, logV note.Verifier, witnesses []Witness, quorum int) (*Cosigner, error) {
	c := &Cosigner{Log: lg, Witnesses: witnesses, Quorum: quorum, logVerifier: logV}
	var vs []note.Verifier
	for _, w := range witnesses {
		if w.URL == "" {
			return nil, fmt.Errorf("witness %q: url is required", w.Name)
		}
		v, err := w.Verifier()
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
		c.states = append(c.states, &state{w: w, v: v})
	}
	if quorum == 0 {
		c.Quorum = len(witnesses)
	}
	if _, err := NewPolicy(vs, c.Quorum); err != nil {
		return nil, err
	}
	return c, nil
}

// Run sends checkpoints to the witnesses until ctx ends. Only the log's
// sequencer sends (another node's Run waits): every node serves the
// cosignatures it stored.
func (c *Cosigner) Run(ctx context.Context) {
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Interval <= 0 {
		c.Interval = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if sizes, err := c.Log.CosignedSizes(ctx); err == nil {
		c.mu.Lock()
		for _, s := range c.states {
			if n, ok := sizes[s.w.Name]; ok {
				s.size, s.ours, s.known, s.cosigned = n.Size, n.Size, true, n.At
			}
		}
		c.mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, s := range c.states {
		wg.Go(func() { c.follow(ctx, s) })
	}
	wg.Wait()
}

// follow is one witness's loop.
func (c *Cosigner) follow(ctx context.Context, s *state) {
	wait := c.Interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = c.Interval
		if !c.Log.IsLeader() {
			continue
		}
		cp, err := c.Log.Checkpoint(ctx)
		if err != nil {
			continue // no checkpoint yet, or the database is away: the log reports it
		}
		c.mu.Lock()
		done := s.known && s.ours == cp.Size
		c.mu.Unlock()
		if done {
			continue
		}
		if err := c.submit(ctx, s, cp); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			s.failures++
			s.lastErr = err.Error()
			wait = min(c.MaxBackoff, time.Second<<min(s.failures-1, 16))
			c.mu.Unlock()
			c.Logger.Warn("witness did not cosign", "witness", s.w.Name, "size", cp.Size, "err", err, "retry_in", wait)
		}
	}
}

// errConflict is a 409: the witness holds another size than we sent.
var errConflict = errors.New("witness holds another size")

// submit gets cp cosigned by s's witness: from the size the cosigner
// believes the witness has, and once more from the size a 409 names.
func (c *Cosigner) submit(ctx context.Context, s *state, cp *audit.Checkpoint) error {
	for range 2 {
		c.mu.Lock()
		old := s.size
		c.mu.Unlock()
		if old > cp.Size {
			return fmt.Errorf("the witness has cosigned size %d, beyond this log's newest checkpoint of size %d: it refuses a log that went back (an older backup restored?)", old, cp.Size)
		}
		var proof tlog.TreeProof
		if old > 0 && old < cp.Size {
			p, err := c.Log.ConsistencyProof(ctx, old, cp.Size)
			if err != nil {
				return err
			}
			proof = p
		}
		line, size, err := c.add(ctx, s, old, proof, cp)
		if errors.Is(err, errConflict) {
			c.mu.Lock()
			s.size = size
			c.mu.Unlock()
			continue
		}
		if err != nil {
			return err
		}
		if err := c.Log.AddCosignature(ctx, cp.Size, s.w.Name, line); err != nil {
			return err
		}
		c.mu.Lock()
		s.size, s.ours, s.known, s.cosigned, s.failures, s.lastErr = cp.Size, cp.Size, true, time.Now(), 0, ""
		c.mu.Unlock()
		return nil
	}
	return errors.New("the witness's size kept changing")
}

// add makes one add-checkpoint request. It returns the cosignature line,
// or errConflict and the witness's size.
func (c *Cosigner) add(ctx context.Context, s *state, old uint64, proof tlog.TreeProof, cp *audit.Checkpoint) (string, uint64, error) {
	body, err := AddCheckpointBody(old, proof, cp.Note)
	if err != nil {
		return "", 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.w.URL, "/")+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("add-checkpoint: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return "", 0, fmt.Errorf("add-checkpoint: read answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		line, err := ParseCosignature(b, cp.Note, s.v)
		return line, 0, err
	case http.StatusConflict:
		n, err := ParseSize(b)
		if err != nil {
			return "", 0, fmt.Errorf("add-checkpoint: 409: %w", err)
		}
		return "", n, errConflict
	case http.StatusNotFound:
		return "", 0, errors.New("add-checkpoint: 404: the witness does not know this log's origin (give its operator `custos log witness-config`)")
	case http.StatusForbidden:
		return "", 0, errors.New("add-checkpoint: 403: the witness does not accept the log's signature (is its key for this log log.pub?)")
	case http.StatusUnprocessableEntity:
		return "", 0, errors.New("add-checkpoint: 422: the witness refuses the checkpoint as inconsistent with the one it cosigned (a fork or rewrite of the log?)")
	case http.StatusBadRequest:
		return "", 0, errors.New("add-checkpoint: 400: the witness refused the request (a checkpoint older than the one it cosigned?)")
	}
	return "", 0, fmt.Errorf("add-checkpoint: status %d", resp.StatusCode)
}

// Status returns each witness's lag behind the log's newest checkpoint.
func (c *Cosigner) Status(ctx context.Context) []Status {
	var newest uint64
	if cp, err := c.Log.Checkpoint(ctx); err == nil {
		newest = cp.Size
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, len(c.states))
	for i, s := range c.states {
		out[i] = Status{Name: s.w.Name, Size: s.ours, LastCosigned: s.cosigned, Failures: s.failures, Error: s.lastErr}
		if newest > s.ours {
			out[i].Behind = newest - s.ours
		}
	}
	return out
}

// Served returns the checkpoint /log/checkpoint serves: the newest one
// with the quorum's cosignatures, every cosignature collected for it
// attached (see [audit.Log.CosignedCheckpoint]).
func (c *Cosigner) Served(ctx context.Context) (*audit.Checkpoint, error) {
	names := make([]string, len(c.Witnesses))
	for i, w := range c.Witnesses {
		names[i] = w.Name
	}
	return c.Log.CosignedCheckpoint(ctx, names, c.Quorum)
}

// Policy returns the cosigner's witnesses and quorum as a client policy.
func (c *Cosigner) Policy() *Policy {
	vs := make([]note.Verifier, len(c.states))
	for i, s := range c.states {
		vs[i] = s.v
	}
	return &Policy{Witnesses: vs, Quorum: c.Quorum}
}

// Witnessed returns the newest checkpoint the quorum cosigned, with the
// cosignatures, checked as a client holding the cosigner's policy would;
// false if no checkpoint has the quorum yet.
func (c *Cosigner) Witnessed(ctx context.Context) (*audit.Checkpoint, bool, error) {
	cp, err := c.Served(ctx)
	if err != nil {
		return nil, false, err
	}
	if _, _, err := c.Policy().Check(cp.Note, c.logVerifier); errors.Is(err, ErrNotEnoughCosignatures) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	return cp, true, nil
}

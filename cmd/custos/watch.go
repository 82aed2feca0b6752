package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
)

// runLogWatch follows a remote custos's public log: it fetches the signed
// checkpoint every interval, proves each new one consistent with the last
// it trusted (from hash tiles it checks against the new root), and exits
// non-zero on a fork, a rollback or a bad signature.
func (m *Main) runLogWatch(ctx context.Context, args []string) error {
	fs := m.flags("log watch", `--log-key log.pub [--state FILE] [--interval 5s] [--once] [--witness NAME=VKEY … --witness-quorum K] URL`, `custos log watch --log-key log.pub --state watch.cp https://custos.example`)
	key := fs.String("log-key", m.Getenv("CUSTOS_LOG_KEY"), "the log's verifier key, or a file holding it (env CUSTOS_LOG_KEY)")
	interval := fs.Duration("interval", 5*time.Second, "time between checks")
	statePath := fs.String("state", "", "file keeping the last trusted checkpoint across runs (a rollback is caught only if this outlives the server's state)")
	once := fs.Bool("once", false, "check once and exit")
	asJSON := fs.Bool("json", false, "print one JSON object per new checkpoint")
	wf := addWitnessFlags(fs.FlagSet)
	pos, err := fs.parse(args, 1, 1, "log-key")
	if err != nil {
		return err
	}
	policy, err := wf.policy()
	if err != nil {
		return err
	}
	base := strings.TrimRight(pos[0], "/")
	v, err := loadVerifier(*key)
	if err != nil {
		return err
	}
	// The log's key chain from the key given: the transition statements
	// the server serves are followed (each must be signed by the key it
	// retires), before the state and before every checkpoint.
	chain := audit.NewKeyChain(v)
	v = chain
	hc := &http.Client{Timeout: 30 * time.Second}
	follow := func() error {
		b, err := httpGet(ctx, hc, base+"/log/key-transitions")
		if err != nil {
			return nil // a server from before rotations: nothing to follow
		}
		msgs, err := audit.ParseTransitionList(b)
		if err != nil {
			return fmt.Errorf("ALERT %s: %w", base, err)
		}
		if err := chain.FollowAll(msgs); err != nil {
			return fmt.Errorf("ALERT %s: %w", base, err)
		}
		return nil
	}
	if err := follow(); err != nil {
		return err
	}
	f := &audit.Follower{Verifier: v}
	if *statePath != "" {
		if b, err := os.ReadFile(*statePath); err == nil {
			if f.Trusted, err = audit.ParseCheckpoint(b, v); err != nil {
				return fmt.Errorf("trusted checkpoint in %s: %w", *statePath, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for {
		if err := follow(); err != nil {
			return err
		}
		msg, err := httpGet(ctx, hc, base+"/log/checkpoint")
		if err != nil {
			return err
		}
		// With a policy, a checkpoint is trusted only once witnessed.
		if policy != nil {
			cp, err := audit.ParseCheckpoint(msg, v)
			if err != nil {
				return fmt.Errorf("ALERT %s: %w", base, err)
			}
			if err := m.checkWitnessed(policy, cp, v); err != nil {
				return fmt.Errorf("%s: %w", base, err)
			}
		}
		prev := f.Trusted
		cp, err := f.Advance(msg, func(from, to uint64) (tlog.TreeProof, error) {
			// The tiles are fetched from the server but checked against
			// the new checkpoint's root before they are used.
			next, err := audit.ParseCheckpoint(msg, v)
			if err != nil {
				return nil, err
			}
			hr := tlog.TileHashReader(tlog.Tree{N: int64(next.Size), Hash: next.Root}, &tileFetcher{ctx: ctx, hc: hc, base: base})
			return tlog.ProveTree(int64(to), int64(from), hr)
		})
		if err != nil {
			return fmt.Errorf("ALERT %s: %w", base, err)
		}
		if prev == nil || cp.Size != prev.Size {
			from := uint64(0)
			if prev != nil {
				from = prev.Size
			}
			now := time.Now().UTC().Format(time.RFC3339)
			if *asJSON {
				json.NewEncoder(m.Stdout).Encode(map[string]any{"at": now, "origin": cp.Origin, "size": cp.Size, "root": cp.Root.String(), "consistent_with": from})
			} else {
				fmt.Fprintf(m.Stdout, "%s  %s size %d root %s: consistent with size %d\n", now, cp.Origin, cp.Size, cp.Root, from)
			}
		}
		if *statePath != "" {
			if err := os.WriteFile(*statePath, cp.Note, 0o644); err != nil {
				return err
			}
		}
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

func httpGet(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return b, err
}

// tileFetcher reads C2SP tlog-tiles hash tiles over HTTP for
// tlog.TileHashReader, which verifies them.
type tileFetcher struct {
	ctx  context.Context
	hc   *http.Client
	base string
}

func (t *tileFetcher) Height() int { return 8 }

func (t *tileFetcher) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		// tlog spells the height out ("tile/8/0/001"); C2SP does not.
		p := strings.Replace(tile.Path(), "tile/8/", "tile/", 1)
		b, err := httpGet(t.ctx, t.hc, t.base+"/log/"+p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (t *tileFetcher) SaveTiles([]tlog.Tile, [][]byte) {}

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line bar on a terminal and stays silent otherwise
// (logs and pipes get the final summary only).
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total uint64
	last  time.Time
	tty   bool
}

func newProgress(w io.Writer, label string, total uint64) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: w, label: label, total: total, tty: tty}
}

func (p *progress) set(done uint64) {
	if p == nil || !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && done < p.total {
		return
	}
	p.last = time.Now()
	frac := 1.0
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
	}
	frac = min(frac, 1)
	const width = 30
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r%s [%s%s] %5.1f%% %d/%d", p.label, strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, done, p.total)
}

func (p *progress) done() {
	if p != nil && p.tty {
		fmt.Fprintln(p.w)
	}
}

package node

import (
	"strings"
	"testing"
	"time"
)

// TestConsoleConfig: the console's session lifetimes default to 30 min
// idle and 12 h absolute; a file may shorten or lengthen them, never past
// the 24 h cap nor with an idle limit longer than the absolute one, and a
// misspelt duration is refused with its key.
func TestConsoleConfig(t *testing.T) {
	for _, c := range []struct {
		cfg       ConsoleConfig
		idle, max time.Duration
		err       string
	}{
		{ConsoleConfig{}, 30 * time.Minute, 12 * time.Hour, ""},
		{ConsoleConfig{IdleTimeout: "10m", MaxSession: "8h"}, 10 * time.Minute, 8 * time.Hour, ""},
		{ConsoleConfig{MaxSession: "24h"}, 30 * time.Minute, 24 * time.Hour, ""},
		{ConsoleConfig{MaxSession: "25h"}, 0, 0, "over the cap"},
		{ConsoleConfig{IdleTimeout: "2h", MaxSession: "1h"}, 0, 0, "longer than max_session"},
		{ConsoleConfig{IdleTimeout: "-1m"}, 0, 0, "positive"},
		{ConsoleConfig{IdleTimeout: "soon"}, 0, 0, "positive"},
	} {
		idle, max, err := c.cfg.durations()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: error %v, want %q", c.cfg, err, c.err)
			}
			continue
		}
		if err != nil || idle != c.idle || max != c.max {
			t.Errorf("%+v: %s %s %v", c.cfg, idle, max, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Console.MaxSession = "48h"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "console.max_session") {
		t.Errorf("Validate with max_session 48h: %v", err)
	}
	if err := CheckFile("custos.json", []byte(`{"origin": "o", "kek": "k", "console": {"idle_timout": "5m"}}`)); err == nil || !strings.Contains(err.Error(), "idle_timout") {
		t.Errorf("a misspelt key: %v", err)
	}
	if err := CheckFile("custos.json", []byte(`{"origin": "o", "kek": "k", "console": {"idle_timeout": "5 minutes"}}`)); err == nil || !strings.Contains(err.Error(), "Go duration") {
		t.Errorf("a bad duration: %v", err)
	}
}

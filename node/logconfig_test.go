package node

import (
	"strings"
	"testing"
	"time"
)

func TestLogCadenceConfig(t *testing.T) {
	for _, tc := range []struct {
		interval, retention string
		wantI, wantR        time.Duration
		err                 string
	}{
		{"", "", 800 * time.Millisecond, DefaultCheckpointRetention, ""},
		{"250ms", "48h", 250 * time.Millisecond, 48 * time.Hour, ""},
		{"", "0s", 800 * time.Millisecond, 0, ""},
		{"0s", "", 0, 0, "log.checkpoint_interval"},
		{"soon", "", 0, 0, "log.checkpoint_interval"},
		{"2h", "", 0, 0, "log.checkpoint_interval"},
		{"", "-1h", 0, 0, "log.checkpoint_retention"},
		{"", "10m", 0, 0, "log.checkpoint_retention"},
	} {
		c := DefaultConfig()
		c.Log.CheckpointInterval, c.Log.CheckpointRetention = tc.interval, tc.retention
		err := c.Validate()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q/%q: Validate = %v, want an error naming %s", tc.interval, tc.retention, err, tc.err)
			}
			continue
		}
		i, r, err := c.Log.durations()
		if err != nil || i != tc.wantI || r != tc.wantR {
			t.Errorf("%q/%q: %v, %v, %v; want %v, %v", tc.interval, tc.retention, i, r, err, tc.wantI, tc.wantR)
		}
	}
}

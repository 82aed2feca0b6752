package node

import (
	"fmt"
	"time"

	"github.com/custos-dev/custos/audit"
)

// LogCadenceConfig is the part of custos.json's "log" section that sets
// how often the audit log signs checkpoints and how long it keeps them
// (docs/log.md). It is a block of its own: the same section's witness
// settings live beside it.
type LogCadenceConfig struct {
	// CheckpointInterval is the most time an entry waits for a signed
	// checkpoint covering it, and the least time between two signed while
	// the log grows (a Go duration, default "800ms").
	CheckpointInterval string `json:"checkpoint_interval,omitempty"`
	// CheckpointRetention is how long stored checkpoints are kept (a Go
	// duration, default "720h"; "0s" keeps them forever). Older ones are
	// pruned except those handed to a tenant (a feed page, a receipt, a
	// proof), cosigned by a witness, or the latest of their hour.
	CheckpointRetention string `json:"checkpoint_retention,omitempty"`
}

// DefaultCheckpointRetention is the retention horizon when custos.json
// names none.
const DefaultCheckpointRetention = 30 * 24 * time.Hour

// durations returns the interval and retention, naming the field at
// fault.
func (c LogCadenceConfig) durations() (interval, retention time.Duration, err error) {
	interval, retention = audit.DefaultCheckpointInterval, DefaultCheckpointRetention
	if c.CheckpointInterval != "" {
		if interval, err = time.ParseDuration(c.CheckpointInterval); err != nil || interval <= 0 || interval > time.Hour {
			return 0, 0, fmt.Errorf("log.checkpoint_interval: %q must be a duration between 1ns and 1h (e.g. \"1s\")", c.CheckpointInterval)
		}
	}
	if c.CheckpointRetention != "" {
		if retention, err = time.ParseDuration(c.CheckpointRetention); err != nil || retention < 0 {
			return 0, 0, fmt.Errorf("log.checkpoint_retention: %q must be a non-negative duration (e.g. \"720h\"; \"0s\" keeps every checkpoint)", c.CheckpointRetention)
		}
		if retention > 0 && retention < time.Hour {
			return 0, 0, fmt.Errorf("log.checkpoint_retention: %q is under an hour; the latest checkpoint of each hour is kept anyway", c.CheckpointRetention)
		}
	}
	return interval, retention, nil
}

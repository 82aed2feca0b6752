package console

import (
	"net/http"

	"github.com/custos-dev/custos/vault"
	"github.com/custos-dev/custos/witness"
)

// The log's health for people: what /healthz tells anyone, unauthenticated
// (the log's size, whether this node sequences, whether its own checks of
// the log hold, each witness's lag), with the newest signed checkpoint.
// Nothing on it is secret, so any signed-in principal may read it; the
// navigation offers it to security staff and operators.

type logHealthView struct {
	Size       uint64
	Sequencer  bool
	Integrity  string // "" when the log's own checks hold
	Checkpoint uint64
	Witnesses  []witness.Status
	Configured bool // witnesses are configured
}

func (c *Console) logHealth(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	v := logHealthView{}
	if lg := c.cfg.Log; lg != nil {
		v.Size, v.Sequencer = lg.Size(), lg.IsLeader()
		if err := lg.Integrity(); err != nil {
			v.Integrity = err.Error()
		}
		if cp, err := lg.Checkpoint(r.Context()); err == nil {
			v.Checkpoint = cp.Size
		}
	}
	if c.cfg.Witnesses != nil {
		v.Configured, v.Witnesses = true, c.cfg.Witnesses.Status(r.Context())
	}
	c.render(w, r, http.StatusOK, "loghealth", c.view(r, s, "Log health", "log-health", v))
	return nil
}

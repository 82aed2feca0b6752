package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos/node"
)

// runOperatorRecover is the break-glass recovery of a locked-out operator
// (or security staff member), run on the host: it hands the request to
// the server through the data directory — writing there is the proof of
// host access — and prints the enrollment that now waits for a second
// operator or security identity (docs/operator-keys.md).
func (m *Main) runOperatorRecover(ctx context.Context, args []string) error {
	fs := m.flags("operator recover", "[--data DIR] PRINCIPAL", "custos operator recover --data /var/lib/custos pr_…")
	resolve := m.serverFlags(fs.FlagSet)
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for the running server to take the request")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	name, err := node.RequestRecovery(cfg, pos[0])
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	res, err := node.AwaitRecovery(wctx, name)
	if err != nil {
		return err
	}
	if res.Error != "" {
		return errors.New("recovery refused: " + res.Error)
	}
	fmt.Fprintf(m.Stdout, `break-glass recovery of %s requested: enrollment %s
  logged (actor host-recovery) and announced to security and to the holder;
  a second operator or security identity — another person — approves it:
    custos enrollment approve %s
  then the enrollment secret goes to the holder's registered address only.
`, pos[0], res.Enrollment, res.Enrollment)
	return nil
}

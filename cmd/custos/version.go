package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/custos-dev/custos/internal/buildinfo"
)

// runVersion prints what runtime/debug.ReadBuildInfo says of this binary.
func (m *Main) runVersion(ctx context.Context, args []string) error {
	fs := m.flags("version", "[--json]", "custos version")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	v := buildinfo.Read()
	if *asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(m.Stdout, string(b))
		return nil
	}
	fmt.Fprintf(m.Stdout, "custos %s (commit %s, built %s, %s)\n", v.Version, v.Commit, v.BuildTime, v.Go)
	return nil
}

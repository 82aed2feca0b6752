package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/custos-dev/custos/detect"
)

// runRulesCheck runs "custos rules check DIR": every problem in the rule
// files, as file:line, and a non-zero exit if there is one.
func (m *Main) runRulesCheck(_ context.Context, args []string) error {
	fs := m.flags("rules check", `[DIR]`, `custos rules check ./rules`)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := fs.parse(args, 0, 1)
	if err != nil {
		return err
	}
	var rules []*detect.Rule
	where := "the default pack"
	if len(pos) == 0 {
		rules, err = detect.DefaultRules()
	} else {
		where = pos[0]
		rules, err = detect.LoadFS(os.DirFS(pos[0]), ".")
	}
	if err != nil {
		return fmt.Errorf("rules in %s do not load (nothing was loaded):\n%w", where, err)
	}
	if *asJSON {
		return (&printer{w: m.Stdout, json: true}).one(rules, "")
	}
	for _, r := range rules {
		kind := "per event"
		if c := r.Correlation; c != nil {
			kind = fmt.Sprintf("%s by %s over %s", c.Type, strings.Join(c.GroupBy, ","), c.Timespan)
		}
		resp := ""
		if len(r.Respond) > 0 {
			resp = " → " + strings.Join(r.Respond, ", ")
		}
		fmt.Fprintf(m.Stdout, "%-26s %-9s %s%s  (%s:%d)\n", r.ID, r.Level, kind, resp, r.File, r.Line)
	}
	fmt.Fprintf(m.Stdout, "%d rules in %s: OK\n", len(rules), where)
	return nil
}

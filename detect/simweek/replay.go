package simweek

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/custos-dev/custos/detect"
)

// Report is what a replay of a generated period through a rule pack
// would have raised.
type Report struct {
	Events int
	Alerts []*detect.Fired
	// ByRule counts the alerts of each rule that fired (level in Levels).
	ByRule map[string]int
	Levels map[string]string
	// FalseMediumPlus counts alerts at medium or above that involve no
	// attacker (every alert, in a benign period).
	FalseMediumPlus int
	// Innocent lists, once each, the principals a false alert would have
	// suspended or whose grants it would have ended, and the tenants it
	// would have frozen ("tenant tn_…"), with the first rule.
	Innocent []string
	Attacks  []Detection
}

// Detection is how an attack fared: the first alert at medium or above
// naming one of its principals, and how long after the attack began.
type Detection struct {
	Attack    Attack
	Detected  bool
	Rule      string
	Level     string
	Latency   time.Duration
	Contained bool // some alert about it suspended its principal or ended its grants
}

// PerMillion is the false medium-or-higher alert rate per million events.
func (r *Report) PerMillion() float64 {
	if r.Events == 0 {
		return 0
	}
	return float64(r.FalseMediumPlus) * 1e6 / float64(r.Events)
}

// Replay generates cfg's period and replays it through rules with the
// policy, as the live detector would evaluate it (event clock).
func Replay(cfg Config, rules []*detect.Rule, policy *detect.Policy) (*Report, error) {
	bt := detect.NewBacktest(rules, nil)
	bt.SetPolicy(policy)
	from := cfg.withDefaults().Start
	st, err := Generate(cfg, func(ev *detect.Event) error { return bt.AddIn(ev, detect.Span{From: from}) })
	if err != nil {
		return nil, err
	}
	rep := &Report{Events: st.Events, Alerts: bt.Alerts(), ByRule: map[string]int{}, Levels: map[string]string{}}
	medium := slices.Index(detect.Levels, "medium")
	seen := map[string]bool{}
	innocent := func(who, rule string) {
		if !seen[who] {
			seen[who] = true
			rep.Innocent = append(rep.Innocent, fmt.Sprintf("%s (%s)", who, rule))
		}
	}
	for _, f := range rep.Alerts {
		rep.ByRule[f.Rule]++
		rep.Levels[f.Rule] = f.Level
		attack := slices.ContainsFunc(f.Principals, func(p string) bool { return st.Attackers[p] })
		if attack {
			continue
		}
		if slices.Index(detect.Levels, f.Level) >= medium {
			rep.FalseMediumPlus++
		}
		for _, a := range f.Respond {
			switch a {
			case detect.RespondSuspend, detect.RespondEndGrant:
				for _, p := range f.Principals {
					innocent(p, f.Rule)
				}
			case detect.RespondFreeze:
				for _, t := range f.Tenants {
					innocent("tenant "+t, f.Rule)
				}
			}
		}
	}
	for _, a := range st.Attacks {
		d := Detection{Attack: a}
		for _, f := range rep.Alerts {
			if f.First.Before(a.Start) || slices.Index(detect.Levels, f.Level) < medium || !slices.ContainsFunc(f.Principals, func(p string) bool { return slices.Contains(a.Principals, p) }) {
				continue
			}
			if !d.Detected {
				d.Detected, d.Rule, d.Level, d.Latency = true, f.Rule, f.Level, f.First.Sub(a.Start)
			}
			d.Contained = d.Contained || slices.Contains(f.Respond, detect.RespondSuspend) || slices.Contains(f.Respond, detect.RespondEndGrant)
		}
		rep.Attacks = append(rep.Attacks, d)
	}
	return rep, nil
}

// Write prints the report as Markdown tables.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "events: %d; false alerts at medium or above: %d (%.2f per million); innocent principals and tenants contained: %d\n\n", r.Events, r.FalseMediumPlus, r.PerMillion(), len(r.Innocent))
	rules := make([]string, 0, len(r.ByRule))
	for k := range r.ByRule {
		rules = append(rules, k)
	}
	sort.Slice(rules, func(i, j int) bool {
		if r.ByRule[rules[i]] != r.ByRule[rules[j]] {
			return r.ByRule[rules[i]] > r.ByRule[rules[j]]
		}
		return rules[i] < rules[j]
	})
	fmt.Fprintln(w, "| rule | level | alerts | per million events |")
	fmt.Fprintln(w, "|---|---|---:|---:|")
	for _, k := range rules {
		fmt.Fprintf(w, "| %s | %s | %d | %.2f |\n", k, r.Levels[k], r.ByRule[k], float64(r.ByRule[k])*1e6/float64(max(1, r.Events)))
	}
	if len(r.Innocent) > 0 {
		fmt.Fprintln(w, "\ninnocent contained (first 20):")
		for _, s := range r.Innocent[:min(20, len(r.Innocent))] {
			fmt.Fprintln(w, "-", s)
		}
	}
	if len(r.Attacks) > 0 {
		fmt.Fprintln(w, "\n| attack | detected by | level | latency (event time) | contained |")
		fmt.Fprintln(w, "|---|---|---|---:|---|")
		for _, d := range r.Attacks {
			if !d.Detected {
				fmt.Fprintf(w, "| %s | NOT DETECTED | | | |\n", d.Attack.Name)
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %v |\n", d.Attack.Name, d.Rule, d.Level, d.Latency, d.Contained)
		}
	}
}

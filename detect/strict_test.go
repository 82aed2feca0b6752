package detect_test

import (
	"strings"
	"testing"

	"github.com/custos-dev/custos/detect"
)

// TestStrictValidation: each misconfiguration that would otherwise load
// and silently never (or always) fire is refused, with the file and the
// line of the offending key or value, and a suggestion where one is
// close. The good file next to it never half-loads.
func TestStrictValidation(t *testing.T) {
	const head = "id: a\ntitle: t\nlevel: low\n"
	corr := func(body string) string {
		return head + "condition: event.data_read\ncorrelation:\n" + body
	}
	cases := []struct{ name, src, want string }{
		{"unknown key with suggestion", "id: a\ntitle: t\nlevle: low\ncondition: event.data_read\n",
			`bad.yaml:3: unknown field "levle" (did you mean level?)`},
		{"unknown correlation key", corr("  type: event_count\n  group_by: [actor]\n  timespam: 1h\n  condition: {gte: 2}\n"),
			`bad.yaml:8: unknown correlation field "timespam" (did you mean timespan?)`},
		{"unknown comparison", corr("  type: event_count\n  group_by: [actor]\n  timespan: 1h\n  condition: {gtee: 2}\n"),
			`bad.yaml:9: unknown correlation.condition field "gtee" (did you mean gte?)`},
		{"key set twice", head + "condition: event.data_read\nlevel: high\n",
			`bad.yaml:5: "level" is set twice (first at line 3)`},
		{"wrong-cased level", "id: a\ntitle: t\nlevel: High\ncondition: event.data_read\n",
			`bad.yaml:3: level must be one of informational, low, medium, high, critical, not "High" (did you mean high?)`},
		{"misspelt level", "id: a\ntitle: t\nlevel: critcal\ncondition: event.data_read\n",
			`(did you mean critical?)`},
		{"wrong-cased response, second item", head + "condition: event.data_read\nrespond:\n  - end_grants\n  - Suspend_Principal\n",
			`bad.yaml:7: response must be one of suspend_principal, end_grants, freeze_tenants, notify_tenants, not "Suspend_Principal" (did you mean suspend_principal?)`},
		{"wrong-cased correlation type", corr("  type: Event_Count\n  group_by: [actor]\n  timespan: 1h\n  condition: {gte: 2}\n"),
			`bad.yaml:6: correlation type must be one of event_count, value_count, value_sum, temporal, not "Event_Count" (did you mean event_count?)`},
		{"group by a misspelt field", corr("  type: event_count\n  group_by: [actor, tenat]\n  timespan: 1h\n  condition: {gte: 2}\n"),
			`bad.yaml:7: cannot group by "tenat" (did you mean tenant?)`},
		{"field that does not exist", head + "condition: event.nosuchfield == \"x\"\n",
			`bad.yaml:4: condition does not compile: at 1:6: undefined field 'nosuchfield'`},
		{"misspelt field", head + "condition: event.data_read && event.actr.startsWith(\"pr_\")\n",
			`bad.yaml:4: condition does not compile: at 1:25: undefined field 'actr' (did you mean actor?)`},
		{"misspelt field in a folded block", head + "condition: >\n  event.data_read &&\n  event.outcom == \"ok\"\n",
			`bad.yaml:4: condition does not compile: at 1:25: undefined field 'outcom' (did you mean outcome?)`},
		{"type mismatch", head + "condition: event.count == \"3\"\n",
			`bad.yaml:4: condition does not compile: at 1:13: found no matching overload for '_==_' applied to '(int, string)'`},
		{"not boolean", head + "condition: event.tenant\n",
			`bad.yaml:4: condition must be a boolean expression, not string`},
		{"constant false", head + "condition: event.data_read && 1 > 2\n",
			`bad.yaml:4: condition can never match: the condition is always false`},
		{"enum value never taken", head + "condition: event.data_read && event.outcome == \"OK\"\n",
			`bad.yaml:4: condition can never match: event.outcome is compared with "OK", a value it never takes (it is one of ok, denied, rejected, error) (did you mean ok?)`},
		{"enum value in a list", head + "condition: event.actor_kind in [\"service\", \"staff\"]\n",
			`bad.yaml:4: condition can never match: event.actor_kind is compared with "staff"`},
		{"two values of one field", head + "condition: event.action == \"contact.read\" && event.data_read && event.action == \"contact.list\"\n",
			`bad.yaml:4: condition can never match: event.action cannot equal both "contact.read" and "contact.list"`},
		{"equal and differ", head + "condition: event.tenant != \"tn_a\" && event.tenant == \"tn_a\"\n",
			`bad.yaml:4: condition can never match: event.tenant must both equal and differ from "tn_a"`},
		{"threshold 0", corr("  type: event_count\n  group_by: [actor]\n  timespan: 1h\n  condition:\n    gte: 0\n"),
			`bad.yaml:10: correlation threshold must be at least 1: gte 0 always holds`},
		{"threshold negative", corr("  type: value_count\n  field: tenant\n  group_by: [actor]\n  timespan: 1h\n  condition: {gt: -2}\n"),
			`bad.yaml:10: correlation threshold must be at least 1, not -2`},
		{"count below one", corr("  type: event_count\n  group_by: [actor]\n  timespan: 1h\n  condition: {lt: 1}\n"),
			`bad.yaml:9: correlation condition lt: 1 can never hold`},
		{"window 0", corr("  type: event_count\n  group_by: [actor]\n  timespan: 0s\n  condition: {gte: 2}\n"),
			`bad.yaml:8: timespan must be longer than 0`},
		{"window negative", corr("  type: event_count\n  group_by: [actor]\n  timespan: -1h\n  condition: {gte: 2}\n"),
			`bad.yaml:8: timespan must be longer than 0`},
		{"window too long", corr("  type: event_count\n  group_by: [actor]\n  timespan: 800h\n  condition: {gte: 2}\n"),
			`bad.yaml:8: timespan must be at most 744h`},
		{"no comparison", corr("  type: event_count\n  group_by: [actor]\n  timespan: 1h\n"),
			`bad.yaml:5: correlation condition must be exactly one of gt, gte, lt, lte, eq`},
		{"a list where a value goes", corr("  type: event_count\n  group_by: [actor]\n  timespan: [1h]\n  condition: {gte: 2}\n"),
			`bad.yaml:8: expected a single value, not a list`},
		{"threshold not a number", corr("  type: event_count\n  group_by: [actor]\n  timespan: 1h\n  condition: {gte: three}\n"),
			"bad.yaml:9: cannot unmarshal !!str `three` into int"},
		{"temporal with a condition", "id: a\ntitle: t\nlevel: low\ncondition: event.data_read\ncorrelation:\n  type: temporal\n  rules: [ok, ok]\n  group_by: [actor]\n  timespan: 1h\n",
			`bad.yaml:4: a temporal rule has no condition of its own`},
		{"temporal names a misspelt rule", "id: a\ntitle: t\nlevel: low\ncorrelation:\n  type: temporal\n  rules: [ok, okk]\n  group_by: [actor]\n  timespan: 1h\n",
			`bad.yaml:1: temporal correlation names unknown rule "okk" (did you mean ok?)`},
		{"duplicate id in another file", goodRule,
			`good.yaml:1: rule id "ok" is already used at bad.yaml:1`},
		{"error in the second document", goodRule2 + "---\nid: b\ntitle: t\nlevel: Low\ncondition: event.data_read\n",
			`bad.yaml:8: level must be one of`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rules, err := detect.Parse(map[string][]byte{"good.yaml": []byte(goodRule), "bad.yaml": []byte(c.src)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
			if rules != nil {
				t.Fatalf("a bad rule set half-loaded: %d rules", len(rules))
			}
		})
	}
}

const goodRule2 = `id: ok2
title: fine too
level: medium
condition: event.action == "contact.list" && event.outcome != "error"
`

// TestEveryProblemIsReported: one pass reports every problem of every
// rule, each at its own line, not just the first.
func TestEveryProblemIsReported(t *testing.T) {
	src := "id: Bad_ID\ntitle: t\nlevel: High\ncondition: event.nosuch\nrespond: [freeze]\nextra: 1\n" +
		"correlation:\n  type: event_count\n  group_by: [actr]\n  timespan: 0s\n  condition: {gte: 0}\n" +
		"---\nid: b\ntitle: t\nlevel: low\ncondition: event.outcome == \"Denied\"\n"
	_, err := detect.Parse(map[string][]byte{"many.yaml": []byte(src)})
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		"many.yaml:1: id must be",
		"many.yaml:3: level must be",
		"many.yaml:4: condition does not compile",
		"many.yaml:5: response must be one of",
		`many.yaml:6: unknown field "extra"`,
		`many.yaml:9: cannot group by "actr" (did you mean actor?)`,
		"many.yaml:10: timespan must be longer than 0",
		"many.yaml:11: correlation threshold must be at least 1",
		`many.yaml:16: condition can never match: event.outcome is compared with "Denied"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// TestStrictValidationAcceptsTheDefaults: the default pack and its
// documented idioms load under the strict checks.
func TestStrictValidationAcceptsTheDefaults(t *testing.T) {
	rules, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) < 20 {
		t.Fatalf("only %d default rules", len(rules))
	}
	ok := []string{
		`event.outcome in ["ok", "denied"] && event.actor_kind != "service"`,
		`event.action == "contact.read" || event.action == "contact.list"`,
		`event.network in ["10.20.0.0/24"] && event.credential_age < duration("1h") && event.time > timestamp("2026-01-01T00:00:00Z")`,
		`event.tokens.exists(t, t.startsWith("ct_")) && double(event.count) > 2.5 * event.export_mean`,
		`event.action != "contact.read" && event.action != "contact.list"`,
	}
	for _, cond := range ok {
		src := "id: x\ntitle: t\nlevel: low\ncondition: '" + cond + "'\n"
		if _, err := detect.Parse(map[string][]byte{"x.yaml": []byte(src)}); err != nil {
			t.Errorf("%s: %v", cond, err)
		}
	}
}

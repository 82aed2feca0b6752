package detect_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/custos-dev/custos/detect"
)

const goodRule = `id: ok
title: fine
level: low
condition: event.action == "contact.read"
`

func TestRuleErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown field", "id: a\ntitle: t\nlevel: low\ncondition: true\nseverity: high\n", `bad.yaml:5: unknown field "severity"`},
		{"bad level", "id: a\ntitle: t\nlevel: urgent\ncondition: true\n", "bad.yaml:3: level must be one of"},
		{"bad CEL", "id: a\ntitle: t\nlevel: low\ncondition: event.action ==\n", "bad.yaml:4: condition does not compile"},
		{"not boolean", "id: a\ntitle: t\nlevel: low\ncondition: event.count + 1\n", "bad.yaml:4: condition must be a boolean"},
		{"bad timespan", "id: a\ntitle: t\nlevel: low\ncondition: true\ncorrelation:\n  type: event_count\n  group_by: [actor]\n  timespan: forever\n  condition: {gte: 2}\n", "bad.yaml:8: timespan must be a duration"},
		{"bad group", "id: a\ntitle: t\nlevel: low\ncondition: true\ncorrelation:\n  type: event_count\n  group_by: [email]\n  timespan: 1h\n  condition: {gte: 2}\n", `bad.yaml:7: cannot group by "email"`},
		{"bad response", "id: a\ntitle: t\nlevel: low\ncondition: true\nrespond: [delete_everything]\n", `bad.yaml:5: response must be one of suspend_principal, end_grants, freeze_tenants, notify_tenants, not "delete_everything"`},
		{"bad YAML", "id: a\ntitle: [unclosed\n", "bad.yaml:"},
		{"value_sum over a text field", "id: a\ntitle: t\nlevel: low\ncondition: true\ncorrelation:\n  type: value_sum\n  field: tenant\n  group_by: [actor]\n  timespan: 1h\n  condition: {gte: 2}\n", "bad.yaml:7: value_sum needs field, one of count"},
		{"unknown temporal rule", "id: a\ntitle: t\nlevel: low\ncorrelation:\n  type: temporal\n  rules: [x, y]\n  group_by: [actor]\n  timespan: 1h\n", `temporal correlation names unknown rule "x"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rules, err := detect.Parse(map[string][]byte{"good.yaml": []byte(goodRule), "bad.yaml": []byte(c.src)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			if rules != nil {
				t.Fatalf("a bad rule set half-loaded: %d rules", len(rules))
			}
		})
	}
}

func TestDuplicateIDsAndMultiDocumentFiles(t *testing.T) {
	two := goodRule + "---\n" + strings.Replace(goodRule, "id: ok", "id: ok2", 1)
	rules, err := detect.Parse(map[string][]byte{"a.yaml": []byte(two)})
	if err != nil || len(rules) != 2 {
		t.Fatalf("two documents: %d rules, %v", len(rules), err)
	}
	_, err = detect.Parse(map[string][]byte{"a.yaml": []byte(goodRule), "b.yaml": []byte(goodRule)})
	if err == nil || !strings.Contains(err.Error(), `b.yaml:1: rule id "ok" is already used at a.yaml:1`) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := detect.LoadFS(fstest.MapFS{"rules/x.txt": {Data: []byte("hi")}}, "rules"); err == nil {
		t.Fatal("a directory without rules loaded")
	}
}

// TestCostLimit: a condition whose worst case (1 000 tokens) costs too
// much is refused when the rule loads, with its line; a single loop over
// the tokens is fine.
func TestCostLimit(t *testing.T) {
	costly := "id: costly\ntitle: t\nlevel: low\ncondition: event.tokens.all(a, event.tokens.all(b, event.tokens.all(c, a + b + c != \"\")))\n"
	_, err := detect.Parse(map[string][]byte{"c.yaml": []byte(costly)})
	if err == nil || !strings.Contains(err.Error(), "c.yaml:4: condition may cost up to") {
		t.Fatalf("err = %v", err)
	}
	cheap := "id: cheap\ntitle: t\nlevel: low\ncondition: event.tokens.exists(t, t.startsWith(\"ct_\"))\n"
	rules, err := detect.Parse(map[string][]byte{"c.yaml": []byte(cheap)})
	if err != nil {
		t.Fatal(err)
	}
	hits, err := detect.NewEngine(rules).Evaluate(&detect.Event{Leaf: ev{who: "a", kind: admin, action: "contact.read", tenant: "a", tokens: []string{"ct_1"}}.leaf()})
	if err != nil || len(hits) != 1 {
		t.Fatalf("hits %v, err %v", hits, err)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add([]byte(goodRule))
	for _, name := range []string{"insider.yaml", "access.yaml", "export.yaml", "integrity.yaml", "operator.yaml"} {
		b, err := detect.Pack.ReadFile("rules/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("id: a\ncorrelation: {type: temporal, rules: [a, a]}\n"))
	f.Add([]byte("id: a\ntitle: t\nlevel: low\ncondition: event.credential_age < duration(\"1h\")\ncorrelation: {type: value_sum, field: count, group_by: [actor], timespan: 1h, condition: {gte: 2}}\nrespond: [notify_tenants]\n"))
	// Strict validation's paths: case, repeated keys, lists where values
	// go, aliases, thresholds, unreachable conditions.
	f.Add([]byte("id: a\ntitle: t\nlevel: High\nlevel: low\ncondition: event.outcome == \"OK\" && event.nosuch\nrespond: Suspend_Principal\n"))
	f.Add([]byte("id: &x a\ntitle: *x\nlevel: [low]\ncondition: >\n  event.action == \"a\" &&\n  event.action == \"b\"\ncorrelation:\n  type: event_count\n  group_by: actor\n  timespan: -1h\n  condition: {lt: 1, gte: x}\n"))
	f.Add([]byte("id: a\ntitle: t\nlevel: low\ncondition: event.actor_kind in [\"service\", \"Staff\"] || 1 > 2\ncorrelation: {type: value_sum, field: count, group_by: [tenat], timespan: 0s, condition: {eq: 0}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rules, err := detect.Parse(map[string][]byte{"f.yaml": b})
		if err != nil && rules != nil {
			t.Fatal("rules returned with an error")
		}
		if err != nil && !strings.Contains(err.Error(), "f.yaml:") {
			t.Fatalf("error without file:line: %v", err)
		}
		// Whatever loaded must evaluate without panicking.
		en := detect.NewEngine(rules)
		en.Evaluate(&detect.Event{Leaf: ev{who: "a", kind: staff, action: "support.view", tenant: "a"}.leaf()})
	})
}

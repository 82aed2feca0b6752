package detect_test

import (
	"context"
	"slices"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/detect"
)

// racyCanaries returns the canary tags as they were when read, while other
// requests commit before the detector reads the log (the interleaving of
// concurrent requests with Step's refreshCanaries → Log.Entries).
type racyCanaries struct {
	inner  detect.Canaries
	during func()
}

func (r *racyCanaries) Tag(tok string) string { return r.inner.Tag(tok) }
func (r *racyCanaries) Tags(ctx context.Context) (map[string]bool, error) {
	tags, err := r.inner.Tags(ctx)
	if r.during != nil {
		f := r.during
		r.during = nil
		f()
	}
	return tags, err
}

func TestCanaryPlantedDuringAStepIsSeen(t *testing.T) {
	w := newWorld(t)
	f := w.tenant("Acme", 2)
	staff, secret := w.principal(custos.KindStaffSupport, "", "sam")
	w.grant(f, staff)
	d := w.detector(defaultRules(t))
	drain(t, w, d) // history evaluated, cursor saved on exit below
	ctx := context.Background()
	// A fresh detector (restart / new leader) whose first refresh races a
	// new list being filled and a staff reveal of one of its canaries.
	ci, err := w.vault.CanaryIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d2 := w.detector(defaultRules(t))
	d2.Canaries = &racyCanaries{inner: ci, during: func() {
		l := &custos.List{TenantID: f.id, Name: "second"}
		if err := w.vault.CreateList(f.admin, l); err != nil {
			t.Fatal(err)
		}
		if err := w.vault.CreateContact(f.admin, &custos.Contact{TenantID: f.id, ListID: l.ID, Email: "zed@example.org"}); err != nil {
			t.Fatal(err)
		}
		tags, err := ci.Tags(ctx)
		if err != nil {
			t.Fatal(err)
		}
		page, err := w.vault.Contacts(f.admin, f.id, l.ID, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Items {
			if tags[ci.Tag(c.Token)] {
				if _, err := w.vault.Reveal(w.as(secret, "203.0.113.5"), f.id, c.Token, custos.ReasonDebugging, "checking: checking the reported bounce"); err != nil {
					t.Fatal(err)
				}
				if err := w.log.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
		t.Fatal("no canary in the new list")
	}}
	drain(t, w, d2)
	drain(t, w, d2) // later steps refresh the canaries: too late
	if rs := ruleIDs(w.alerts()); !slices.Contains(rs, "canary-read") {
		t.Errorf("staff revealed a canary but no canary-read alert fired (alerts %v)", rs)
	}
	if _, _, err := w.vault.Authenticate(custos.NewContext(ctx, &custos.Request{ID: custos.NewID(custos.PrefixRequest)}), secret); err == nil {
		t.Errorf("the engineer who revealed a canary still authenticates")
	}
	// A replay from scratch of the same entries decides the same: the
	// canary rule, under its own id so its firing is told apart from the
	// first detector's (and without containment, already applied), fires
	// on the reveal too.
	var canaryRead *detect.Rule
	for _, r := range defaultRules(t) {
		if r.ID == "canary-read" {
			canaryRead = r
		}
	}
	if canaryRead == nil {
		t.Fatal("no canary-read rule among the defaults")
	}
	replayRule := *canaryRead
	replayRule.ID, replayRule.Respond = "canary-read-replay", nil
	d3 := w.detector([]*detect.Rule{&replayRule})
	d3.Name = "replay"
	drain(t, w, d3)
	if rs := ruleIDs(w.alerts()); !slices.Contains(rs, "canary-read-replay") {
		t.Errorf("a from-scratch replay of the same log did not see the canary reveal (alerts %v)", rs)
	}
}

package vault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
)

// newFixtureWith is newFixture with vault options.
func newFixtureWith(t *testing.T, opts vault.Options) *fixture {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	opts.Now = clock.Now
	st := vaulttest.Open(t, opts)
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	return f
}

// newFixtureOneClock is newFixtureWith whose log stamps leaves by the
// fixture's clock too: a leaf's time then says when, in the test's story,
// its request came (a canary sharing a real create's instant shows).
func newFixtureOneClock(t *testing.T, opts vault.Options) *fixture {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	opts.Now = clock.Now
	st := vaulttest.OpenWith(t, opts, func(c *audit.Config) { c.Now = clock.Now })
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	return f
}

// realisticList writes n NDJSON rows shaped like a customer's list: a
// few attribute keys present in varying combinations, mixed consent, a
// handful of mail providers and a company domain.
func realisticList(rng *rand.Rand, n int) string {
	first := strings.Fields("olivia liam emma noah ava elijah sophia lucas mia mason amelia ethan harper logan evelyn aiden")
	last := strings.Fields("kowalski dubois rossi novak silva jensen okafor tanaka murphy schmidt")
	domains := []string{"gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "icloud.com", "acme-corp.de", "web.de"}
	var b strings.Builder
	for i := range n {
		f, l := first[rng.IntN(len(first))], last[rng.IntN(len(last))]
		attrs := map[string]string{"first_name": strings.ToUpper(f[:1]) + f[1:]}
		if rng.IntN(10) < 8 {
			attrs["last_name"] = strings.ToUpper(l[:1]) + l[1:]
		}
		if rng.IntN(2) == 0 {
			attrs["plan"] = []string{"free", "pro", "team"}[rng.IntN(3)]
		}
		if rng.IntN(5) == 0 {
			attrs["city"] = []string{"Lyon", "Leeds", "Porto", "Graz"}[rng.IntN(4)]
		}
		consent := custos.ConsentSubscribed
		switch r := rng.IntN(10); {
		case r < 2:
			consent = custos.ConsentUnsubscribed
		case r < 3:
			consent = custos.ConsentUnknown
		}
		line, _ := json.Marshal(map[string]any{"email": fmt.Sprintf("%s.%s%d@%s", f, l, i, domains[rng.IntN(len(domains))]),
			"consent": consent, "attributes": attrs})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// canaryFeatures is what a tenant admin (or a staff member with a masked
// view) sees of a contact: the attribute key set, consent, the masked
// domain's suffix, the creation time, and whether the log named the
// token when it was created.
type canaryFeatures struct {
	keys, consent, domain, created, logged, updated, paired string
}

func (c canaryFeatures) values(pairs bool) []string {
	v := []string{"k:" + c.keys, "c:" + c.consent, "d:" + c.domain, "t:" + c.created, "l:" + c.logged, "u:" + c.updated}
	if pairs {
		v = append(v, "p:"+c.paired)
	}
	return v
}

// TestCanaryClassifier plays a tenant admin trying to pick the canaries
// of a realistic list from everything the admin may see: the contacts
// (their export), the tenant's log leaves. It scores each contact by how
// rare its features are among the list (naive Bayes against "typical")
// and takes the top quarter. Canaries that match the list leave it no
// better than chance: the goal is precision within 2× the base rate.
// Two classifiers judge each list: one on the rows' shape, creation
// instant and whether the log named them; one that also looks for create
// leaves sharing their instant with another (a canary riding a real
// create's commit shared it, which told canaries apart in a list whose
// creates are minutes apart: 3.3–3.8× before the planter).
//
// "import first": the list starts with a bulk import, which its canaries
// join. "signups first": it starts with 20 contacts created one by one,
// among which some canaries are created with leaves of their own; the
// import plants the rest. "creates only": 2,000 rows created one by one,
// 0–10 minutes apart, and no import; the list's canaries and the tokens
// of the admin's watermark rows are each created by a create leaf of
// their own at a moment of their own, at positions drawn over the list's
// growth. "imported, then updated": the import, then 3,000 updates of
// random real rows 0–2 minutes apart (consent withdrawn or given, a plan
// changed, a city set or removed), as a pipeline that knows its own rows
// makes them: both classifiers also see whether a row was ever updated
// and how many update leaves name it. Echoed canary updates
// (canaryupdate.go) keep the canaries among the rows that were.
func TestCanaryClassifier(t *testing.T) {
	if raceDetector {
		t.Skip("statistics over 8,000 writes, no concurrency: asserted by the plain run (README's test command)")
	}
	t.Run("import first", func(t *testing.T) { canaryClassifier(t, false, false, 0) })
	t.Run("signups first", func(t *testing.T) { canaryClassifier(t, true, false, 0) })
	t.Run("creates only", func(t *testing.T) { canaryClassifier(t, true, true, 0) })
	t.Run("imported, then updated", func(t *testing.T) { canaryClassifier(t, false, false, 3000) })
}

func canaryClassifier(t *testing.T, signupsFirst, createsOnly bool, updates int) {
	const real, canaries = 2000, 40
	// Trap domains that mask like the list's providers (docs/detection.md):
	// the operator's choice, which the masked view cannot see past.
	f := newFixtureOneClock(t, vault.Options{Canaries: canaries, CanaryDomains: []string{
		"getmailbox.com", "yourpost.com", "outpost-mail.com", "hotpost.co.uk", "inboxly.com", "acmemail.de", "wirpost.de"}})
	admin, tenant, list := f.admin(t)
	rng := rand.New(rand.NewPCG(20, 20))
	signups := func() {
		for i := range 20 {
			c := &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("signup%d@gmail.com", i),
				Attributes: []byte(`{"first_name":"Ann"}`), Consent: custos.ConsentSubscribed}
			if err := f.vault.CreateContact(admin, c); err != nil {
				t.Fatal(err)
			}
			f.pass(t, time.Minute)
		}
		f.pass(t, time.Hour)
	}
	if signupsFirst {
		signups()
	}
	if createsOnly {
		for _, line := range strings.Split(strings.TrimSpace(realisticList(rng, real)), "\n") {
			var row struct {
				Email      string          `json:"email"`
				Consent    custos.Consent  `json:"consent"`
				Attributes json.RawMessage `json:"attributes"`
			}
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatal(err)
			}
			c := &custos.Contact{TenantID: tenant, ListID: list, Email: row.Email, Consent: row.Consent, Attributes: row.Attributes}
			if err := f.vault.CreateContact(admin, c); err != nil && custos.ErrorCode(err) != custos.ECONFLICT {
				t.Fatal(err)
			}
			f.pass(t, time.Duration(rng.IntN(600))*time.Second)
		}
	} else if res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(realisticList(rng, real))), vault.ImportOptions{}); err != nil || res.Imported != real {
		t.Fatalf("import: %+v %v", res, err)
	}
	if !signupsFirst {
		f.pass(t, time.Hour)
		signups()
	}
	if updates > 0 {
		idx, err := f.vault.CanaryIndex(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tags, err := idx.Tags(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var own []string // the rows the pipeline knows: the real ones
		for _, tk := range storetest.Column[string](t, f.db.Read, `SELECT token FROM contacts WHERE list_id = $1`, list) {
			if !tags[idx.Tag(tk)] {
				own = append(own, tk)
			}
		}
		consents := []custos.Consent{custos.ConsentSubscribed, custos.ConsentUnsubscribed, custos.ConsentUnknown}
		for range updates {
			tk := own[rng.IntN(len(own))]
			var u custos.ContactUpdate
			switch r := rng.IntN(10); {
			case r < 5:
				cs := consents[rng.IntN(len(consents))]
				u.Consent = &cs
			default:
				c, err := f.vault.Contact(admin, tenant, tk)
				if err != nil {
					t.Fatal(err)
				}
				var attrs map[string]any
				_ = json.Unmarshal(c.Attributes, &attrs)
				if attrs == nil {
					attrs = map[string]any{}
				}
				if r < 8 {
					attrs["plan"] = []string{"free", "pro", "team"}[rng.IntN(3)]
				} else if _, ok := attrs["city"]; ok {
					delete(attrs, "city")
				} else {
					attrs["city"] = []string{"Lyon", "Leeds", "Porto", "Graz"}[rng.IntN(4)]
				}
				b, _ := json.Marshal(attrs)
				raw := json.RawMessage(b)
				u.Attributes = &raw
			}
			if _, err := f.vault.UpdateContact(admin, tenant, tk, u); err != nil {
				t.Fatal(err)
			}
			f.pass(t, time.Duration(rng.IntN(120))*time.Second)
		}
		f.pass(t, time.Hour)
	}

	// The admin's view: the export, and the tenant's log leaves.
	var rows []*custos.Contact
	if err := f.vault.Export(admin, tenant, list, "ndjson", func(c *custos.Contact) error { rows = append(rows, c); return nil }); err != nil {
		t.Fatal(err)
	}
	f.log.Sync(context.Background())
	logged := map[string]bool{}
	createdAt := map[string]int64{} // token → its create leaf's time (ms)
	leafTimes := map[int64]int{}    // create leaves of the tenant per instant
	updatedBy := map[string]int{}   // token → update leaves naming it
	lr, err := f.db.Read.Query(`SELECT data FROM audit_leaves`)
	if err != nil {
		t.Fatal(err)
	}
	for lr.Next() {
		var data []byte
		var leaf struct {
			Action string    `json:"action"`
			Tenant string    `json:"tenant"`
			Tokens []string  `json:"tokens"`
			Time   time.Time `json:"time"`
		}
		if err := lr.Scan(&data); err != nil || json.Unmarshal(data, &leaf) != nil {
			t.Fatal(err)
		}
		if leaf.Tenant == tenant && leaf.Action == string(custos.ActionContactUpdate) {
			for _, tk := range leaf.Tokens {
				updatedBy[tk]++
			}
		}
		if leaf.Tenant == tenant && (leaf.Action == string(custos.ActionContactCreate) || leaf.Action == string(custos.ActionContactImport)) {
			for _, tk := range leaf.Tokens {
				logged[tk] = true
				createdAt[tk] = leaf.Time.UnixMilli()
			}
			if leaf.Action == string(custos.ActionContactCreate) {
				leafTimes[leaf.Time.UnixMilli()]++
			}
		}
	}
	lr.Close()

	// Creation time as the size of the group created at the same instant
	// (a create makes 1, an import thousands): a group whose size matches
	// no write in the log stands out.
	sameTime := map[int64]int{}
	createdTogether := map[int64]int{} // rows named by a create leaf, per creation instant
	for _, c := range rows {
		sameTime[c.CreatedAt.UnixMilli()]++
		if leafTimes[createdAt[c.Token]] > 0 {
			createdTogether[c.CreatedAt.UnixMilli()]++
		}
	}
	feats := make([]canaryFeatures, len(rows))
	for i, c := range rows {
		var attrs map[string]json.RawMessage
		_ = json.Unmarshal(c.Attributes, &attrs)
		ks := make([]string, 0, len(attrs))
		for k := range attrs {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		m := addr.Mask(c.Email)
		feats[i] = canaryFeatures{keys: strings.Join(ks, ","), consent: string(c.Consent), domain: m[strings.IndexByte(m, '@'):],
			created: fmt.Sprint(int(math.Log10(float64(sameTime[c.CreatedAt.UnixMilli()])))), logged: fmt.Sprint(logged[c.Token]),
			updated: fmt.Sprint(!c.UpdatedAt.Equal(c.CreatedAt), min(updatedBy[c.Token], 3))}
		// Its create leaf shares its time with another create leaf, or its
		// row its creation instant with another row a create named.
		named := leafTimes[createdAt[c.Token]] > 0
		feats[i].paired = fmt.Sprint(named && (leafTimes[createdAt[c.Token]] > 1 || createdTogether[c.CreatedAt.UnixMilli()] > 1))
	}
	type scored struct {
		i     int
		score float64
		tie   uint64
	}
	rank := func(pairs, history bool) []scored {
		freq := map[string]int{}
		for _, ft := range feats {
			for _, v := range ft.values(pairs) {
				freq[v]++
			}
		}
		ranked := make([]scored, len(rows))
		for i, ft := range feats {
			s := 0.0
			for _, v := range ft.values(pairs) {
				s -= math.Log(float64(freq[v]) / float64(len(rows)))
			}
			ranked[i] = scored{i, s, rng.Uint64()}
		}
		slices.SortFunc(ranked, func(a, b scored) int {
			if history && updates > 0 {
				// Fewest update leaves first: a row never updated in a
				// list whose rows mostly were is the suspect.
				if d := updatedBy[rows[a.i].Token] - updatedBy[rows[b.i].Token]; d != 0 {
					return d
				}
			}
			if a.score != b.score {
				if a.score > b.score {
					return -1
				}
				return 1
			}
			return int(a.tie>>1) - int(b.tie>>1)
		})
		return ranked
	}

	// Ground truth, from the detector's index.
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tags, err := idx.Tags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The export's own watermark rows (fresh canaries, not stored as
	// contacts) are canaries too: the admin wants both out of the file.
	stored := map[string]bool{}
	cr, err := f.db.Read.Query(`SELECT token FROM contacts WHERE list_id = $1`, list)
	if err != nil {
		t.Fatal(err)
	}
	for cr.Next() {
		var tk string
		if err := cr.Scan(&tk); err != nil {
			t.Fatal(err)
		}
		stored[tk] = true
	}
	cr.Close()
	isCanary := func(c *custos.Contact) bool { return tags[idx.Tag(c.Token)] || !stored[c.Token] }
	total, listCanaries := 0, 0
	for _, c := range rows {
		if isCanary(c) {
			total++
		}
		if tags[idx.Tag(c.Token)] {
			listCanaries++
		}
	}
	// A list grown by creates plants its canaries over its growth: most of
	// them by 2,000 creates, not necessarily all.
	if createsOnly {
		if listCanaries < canaries/2 || listCanaries > canaries || total != listCanaries+canaries {
			t.Fatalf("%d canaries in the export, %d of them the list's: want %d–%d list canaries and %d watermark rows", total, listCanaries, canaries/2, canaries, canaries)
		}
	} else if total != 2*canaries {
		t.Fatalf("%d canaries in the export, want %d list canaries and %d watermark rows", total, canaries, canaries)
	}
	if createsOnly {
		// Every row of the export, canaries included, is named by a create
		// leaf: the log tells none apart.
		named := 0
		for _, c := range rows {
			if logged[c.Token] {
				named++
			}
		}
		t.Logf("%d of %d exported rows named by a create leaf", named, len(rows))
	}
	base := float64(total) / float64(len(rows))
	pc, pa := 0, 0
	for i, c := range rows {
		if feats[i].paired == "true" {
			pa++
			if isCanary(c) {
				pc++
			}
		}
	}
	t.Logf("%d rows paired, %d of them canaries", pa, pc)
	if updates > 0 {
		upd := map[string][2]int{}
		for i, c := range rows {
			x := upd[feats[i].updated]
			if isCanary(c) {
				x[1]++
			} else {
				x[0]++
			}
			upd[feats[i].updated] = x
		}
		t.Logf("rows by (updated, update leaves): real, canaries: %v", upd)
	}
	for _, cl := range []struct {
		name           string
		pairs, history bool
	}{{"shape", false, false}, {"shape and shared instants", true, false}, {"update history, then shape", false, true}} {
		if cl.history && updates == 0 {
			continue
		}
		ranked := rank(cl.pairs, cl.history)
		precisionAt := func(k int) (p, r float64) {
			hits := 0
			for _, s := range ranked[:k] {
				if isCanary(rows[s.i]) {
					hits++
				}
			}
			return float64(hits) / float64(k), float64(hits) / float64(total)
		}
		var listHits, markHits int
		for _, s := range ranked[:total] {
			switch c := rows[s.i]; {
			case tags[idx.Tag(c.Token)]:
				listHits++
			case !stored[c.Token]:
				markHits++
			}
		}
		name := cl.name
		pk, rk := precisionAt(total)
		pq, rq := precisionAt(len(rows) / 4)
		t.Logf("%s: top %d picks: %d list canaries, %d watermark rows", name, total, listHits, markHits)
		t.Logf("%s: canary classifier over %d rows, %d canaries (base rate %.4f): top %d precision %.3f recall %.3f (%.1f× base); top quarter precision %.3f recall %.3f (%.1f× base)",
			name, len(rows), total, base, total, pk, rk, pk/base, pq, rq, pq/base)
		if pq > 2*base {
			t.Errorf("%s: canaries are told apart: top-quarter precision %.3f is %.1f× the base rate %.4f (goal ≤ 2×)", name, pq, pq/base, base)
		}
	}
}

// TestCanaryCopiesNoRareValue: a value only one row of the list holds (a
// phone number, a customer id) is never copied into a canary: a canary
// outliving that row's deletion would keep it.
func TestCanaryCopiesNoRareValue(t *testing.T) {
	f := newFixtureWith(t, vault.Options{Canaries: 30})
	admin, tenant, list := f.admin(t)
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, `{"email":"p%d@gmail.com","consent":"subscribed","attributes":{"plan":"pro","phone":"+44 7700 9%05d"}}`+"\n", i, i*7)
	}
	if res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(b.String())), vault.ImportOptions{}); err != nil || res.Imported != 40 {
		t.Fatalf("import: %+v %v", res, err)
	}
	page, err := f.vault.Contacts(admin, tenant, list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	phones := map[string]int{}
	for _, c := range page.Items {
		var a map[string]string
		if err := json.Unmarshal(c.Attributes, &a); err != nil || a["plan"] != "pro" || len(a["phone"]) != len("+44 7700 900000") {
			t.Fatalf("a contact %s does not have the list's shape: %s", c.Token, c.Attributes)
		}
		phones[a["phone"]]++
	}
	if len(page.Items) != 100 {
		t.Fatalf("%d contacts, want 40, 30 canaries and the reader's 30 watermark rows", len(page.Items))
	}
	for p, n := range phones {
		if n > 1 {
			t.Errorf("phone %s held by %d contacts: a canary copied a real row's unique value", p, n)
		}
	}
}

// TestCanaryNamesFromACreate: a list started by one create has one donor;
// its rare first name is not copied into the canaries, and theirs are
// names, not its letters redrawn at random (which keep its length).
func TestCanaryNamesFromACreate(t *testing.T) {
	f := newFixtureWith(t, vault.Options{Canaries: 30})
	admin, tenant, list := f.admin(t)
	if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "zeb@gmail.com",
		Attributes: []byte(`{"first_name":"Zebedee"}`), Consent: custos.ConsentUnsubscribed}); err != nil {
		t.Fatal(err)
	}
	page, err := f.vault.Contacts(admin, tenant, list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	lengths := map[int]bool{}
	for _, c := range page.Items {
		if c.Email == "zeb@gmail.com" {
			continue
		}
		var a map[string]string
		if err := json.Unmarshal(c.Attributes, &a); err != nil || a["first_name"] == "" || c.Consent != custos.ConsentUnsubscribed {
			t.Fatalf("canary %s lacks the donor's shape: %s %s", c.Token, c.Attributes, c.Consent)
		}
		if a["first_name"] == "Zebedee" {
			t.Fatal("a canary copied the only contact's first name")
		}
		lengths[len(a["first_name"])] = true
	}
	if len(page.Items) != 1+1+30 || len(lengths) < 2 { // the contact, the list's first canary (its create's), the reader's watermark rows
		t.Fatalf("%d contacts; canary first names all of one length %v: letters redrawn, not names", len(page.Items), lengths)
	}
}

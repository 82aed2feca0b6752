package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/node"
)

// BenchmarkPages measures a console page against the API route it
// mirrors, side by side on one node and one data set (20 access requests,
// 3 lists): the difference is the session's re-authentication, the
// template and the bytes. Each request, page or API, appends its audit
// entry (support.read), so both pay the log.
//
//	go test ./console -run '^$' -bench BenchmarkPages -benchtime 2000x
func BenchmarkPages(b *testing.B) {
	e := newEnv(b, node.Options{})
	tenant, admin := e.newTenant("Acme")
	ctx := context.Background()
	for i := range 3 {
		if _, err := e.api(admin).CreateList(ctx, tenant, fmt.Sprintf("list-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.api(admin).SetSupportSettings(ctx, tenant, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: "24h"}); err != nil {
		b.Fatal(err)
	}
	staff, _ := e.principal(custos.KindStaffSupport, "", "sam")
	for i := range 20 {
		if _, err := e.api(staff).RequestAccess(ctx, tenant, custos.AccessRequestBody{Reason: fmt.Sprintf("case %d", i), Ticket: "SUP-1", Scope: custos.ScopeViewMasked, Duration: "1h"}); err != nil {
			b.Fatal(err)
		}
	}
	br := e.browser()
	br.signIn(admin)
	run := func(b *testing.B, req func() (*http.Response, error)) {
		for b.Loop() {
			res, err := req()
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	}
	hc := &http.Client{}
	b.Run("api=access-requests", func(b *testing.B) {
		run(b, func() (*http.Response, error) {
			r, _ := http.NewRequest("GET", e.url+"/v1/tenants/"+tenant+"/access-requests", nil)
			r.Header.Set("Authorization", "Bearer "+admin)
			return hc.Do(r)
		})
	})
	b.Run("console=requests", func(b *testing.B) {
		run(b, func() (*http.Response, error) { return br.hc.Get(e.url + "/ui/t/" + tenant + "/requests") })
	})
	b.Run("console=overview", func(b *testing.B) {
		run(b, func() (*http.Response, error) { return br.hc.Get(e.url + "/ui/t/" + tenant) })
	})
}

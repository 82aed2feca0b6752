package server_test

import (
	"net/http"
	"testing"

	"golang.org/x/time/rate"

	"github.com/custos-dev/custos/server"
)

// BenchmarkAuditedGET is one contact read by its tenant's admin over
// loopback HTTP (authentication, decryption, the leaf durable before the
// answer), with the per-key and per-source limiters off and on (at limits
// the run never reaches: what is measured is their cost, not refusals).
func BenchmarkAuditedGET(b *testing.B) {
	for _, bc := range []struct {
		name  string
		limit rate.Limit
	}{{"limiter=off", rate.Inf}, {"limiter=on", 1e9}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnvWith(b, func(c *server.Config) { c.KeyRate, c.SourceRate = bc.limit, bc.limit })
			f := e.newTenant("Acme")
			var ct struct{ Token string }
			ct = decode[struct{ Token string }](b, e.postJSON(f.admin, "/v1/tenants/"+f.tenant+"/lists/"+f.list+"/contacts", map[string]string{"email": e.email()}, 201))
			path := e.srv.URL + "/v1/tenants/" + f.tenant + "/contacts/" + ct.Token
			b.SetParallelism(8) // 8 × GOMAXPROCS clients: group commit at work
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", path, nil)
					req.Header.Set("Authorization", "Bearer "+f.admin)
					resp, err := e.srv.Client().Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

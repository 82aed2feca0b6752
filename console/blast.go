package console

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/vault"
)

// The blast radius (docs/blast-radius.md) for security staff: what a
// principal, a key or a network touched, or who touched a tenant, per
// tenant, with the proven report and each tenant's part to download —
// the files custos verify-report checks offline. Each run is the API's
// GET /v1/blast-radius, authorized and recorded as such.

type blastView struct {
	Query   url.Values
	Asked   bool
	Report  *custos.BlastReport
	Summary []blastreport.TenantSummary
	// Download is the report's download link (its query from parsed
	// values, encoded: trusted as a URL by the template).
	Download template.URL
}

// blastQuery reads the subject and the window from the URL, as the API
// route does, and checks it.
func blastQuery(v url.Values) (custos.BlastQuery, error) {
	q, err := custos.ParseBlastQuery(v)
	if err != nil {
		return q, err
	}
	return q, q.Validate()
}

// blastParams keeps only the query's own parameters, for links.
func blastParams(v url.Values) url.Values {
	out := url.Values{}
	for _, k := range []string{"principal", "key", "source", "tenant", "since", "until"} {
		if x := v.Get(k); x != "" {
			out.Set(k, x)
		}
	}
	return out
}

func (c *Console) blast(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	params := blastParams(r.URL.Query())
	v := blastView{Query: params}
	if len(params) > 0 {
		q, err := blastQuery(params)
		if err != nil {
			return c.vault.Reject(r.Context(), custos.ActionBlastRadius, "", err)
		}
		rep, err := c.vault.BlastRadius(r.Context(), q)
		if err != nil {
			return err
		}
		v.Asked, v.Report, v.Summary, v.Download = true, rep, blastreport.Summarize(rep), template.URL("/ui/security/blast/report?"+params.Encode())
	}
	c.render(w, r, http.StatusOK, "blast", c.view(r, s, "Blast radius", "blast", v))
	return nil
}

// blastReport downloads the proven report (or, with part=TENANT, that
// tenant's part of it: what the tenant can check alone).
func (c *Console) blastReport(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	q, err := blastQuery(r.URL.Query())
	if err != nil {
		return c.vault.Reject(r.Context(), custos.ActionBlastRadius, "", err)
	}
	rep, err := c.vault.BlastRadius(r.Context(), q)
	if err != nil {
		return err
	}
	file, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	file = append(file, '\n')
	name := "blast-radius.json"
	if part := r.URL.Query().Get("part"); part != "" {
		parts, err := blastreport.Split(rep, file)
		if err != nil {
			return err
		}
		p, ok := parts[part]
		if !ok || !custos.ValidID(custos.PrefixTenant, part) {
			return custos.Errorf(custos.ENOTFOUND, "the report names no such tenant")
		}
		if file, err = json.MarshalIndent(p, "", "  "); err != nil {
			return err
		}
		file, name = append(file, '\n'), "blast-radius-"+part+".json"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(file)
	return err
}

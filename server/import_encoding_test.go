package server_test

import (
	"strings"
	"testing"

	"github.com/custos-dev/custos"
)

// TestImportEncoding: the import route takes UTF-8 (a BOM skipped), stops
// at the first line that is not UTF-8 naming it, and converts Latin-1 and
// Windows-1252 when the query parameter encoding says so.
func TestImportEncoding(t *testing.T) {
	e := newEnv(t)
	list := func(f tenantFixture) string { return "/v1/tenants/" + f.tenant + "/lists/" + f.list }
	a1, a2 := e.email(), e.email()
	latin1 := "email,name\n" + a1 + ",Ann\n" + a2 + ",Zo\xeb M\xfcller\n"

	f := e.newTenant("Refused")
	res := decode[custos.ImportResult](t, e.do(f.admin, "POST", list(f)+"/import", "text/csv", strings.NewReader(latin1), 200))
	if !res.Aborted || res.AbortCode != custos.EINVALID || !strings.HasPrefix(res.AbortReason, "line 3: not valid UTF-8") || res.Imported != 1 {
		t.Fatalf("Latin-1 without the option: %+v, want aborted at line 3 after 1 row", res)
	}
	if strings.Contains(res.AbortReason, "Zo") || strings.Contains(res.AbortReason, "ller") {
		t.Errorf("abort reason holds row content: %q", res.AbortReason)
	}

	for _, enc := range []string{"latin1", "iso-8859-1", "windows-1252"} {
		f := e.newTenant("Converted " + enc)
		res := decode[custos.ImportResult](t, e.do(f.admin, "POST", list(f)+"/import?encoding="+enc, "text/csv", strings.NewReader(latin1), 200))
		if res.Aborted || res.Imported != 2 {
			t.Fatalf("encoding=%s: %+v", enc, res)
		}
		if out := string(e.get(f.admin, list(f)+"/export?format=csv", 200)); !strings.Contains(out, "Zoë Müller") {
			t.Errorf("encoding=%s: export does not hold the converted name:\n%s", enc, out)
		}
	}

	status, body := e.send(f.admin, "POST", list(f)+"/import?encoding=ebcdic", "text/csv", strings.NewReader("email\n"))
	if status != 400 || !strings.Contains(string(body), custos.EINVALID) {
		t.Errorf("unknown encoding: %d %s", status, body)
	}

	// A BOM changes nothing, in either format.
	utf := "email,name\n" + e.email() + ",Zoë\n"
	nd := `{"email":"` + e.email() + `","attributes":{"name":"Zoë"}}` + "\n"
	for _, tc := range []struct{ ct, body string }{{"text/csv", utf}, {"application/x-ndjson", nd}} {
		plain, withBOM := e.newTenant("Plain "+tc.ct), e.newTenant("BOM "+tc.ct)
		r1 := decode[custos.ImportResult](t, e.do(plain.admin, "POST", list(plain)+"/import", tc.ct, strings.NewReader(tc.body), 200))
		r2 := decode[custos.ImportResult](t, e.do(withBOM.admin, "POST", list(withBOM)+"/import", tc.ct, strings.NewReader("\ufeff"+tc.body), 200))
		if r1.Imported != 1 || r1.Failed != 0 || r1.Imported != r2.Imported || r1.Failed != r2.Failed || r1.CommittedThroughLine != r2.CommittedThroughLine {
			t.Errorf("%s: without BOM %+v, with BOM %+v", tc.ct, r1, r2)
		}
		x1 := string(e.get(plain.admin, list(plain)+"/export?format=ndjson", 200))
		x2 := string(e.get(withBOM.admin, list(withBOM)+"/export?format=ndjson", 200))
		if strip(x1) != strip(x2) || !strings.Contains(x1, "Zoë") {
			t.Errorf("%s: exports differ:\n%s\n%s", tc.ct, x1, x2)
		}
	}
}

// strip drops what differs between two lists holding the same contacts:
// tokens and times.
func strip(ndjson string) string {
	var out []string
	for line := range strings.Lines(ndjson) {
		var keep []string
		for _, f := range strings.Split(line, ",") {
			if !strings.Contains(f, `"token"`) && !strings.Contains(f, `_at"`) && !strings.Contains(f, `"list_id"`) && !strings.Contains(f, `"tenant_id"`) {
				keep = append(keep, f)
			}
		}
		out = append(out, strings.Join(keep, ","))
	}
	return strings.Join(out, "\n")
}

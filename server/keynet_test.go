package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/custos-dev/custos"
)

// TestKeyNetworksOverHTTP: a key bound to networks the request does not
// come from (the test's client is 127.0.0.1) is answered exactly as an
// unknown key; bound to loopback it works; PUT /v1/keys/{id}/networks
// narrows and widens as the vault allows.
func TestKeyNetworksOverHTTP(t *testing.T) {
	e := newEnv(t)
	op := e.operator
	me := decode[struct{ Items []custos.APIKey }](t, e.get(op, "/v1/keys", 200)).Items[0]
	created := decode[custos.KeyCreated](t, e.postJSON(op, "/v1/principals/"+me.PrincipalID+"/keys",
		map[string]any{"scopes": []string{"all"}, "networks": []string{"10.0.0.0/8"}}, 201))
	if fmt.Sprint(created.Key.Networks) != "[10.0.0.0/8]" {
		t.Fatalf("created key: %+v", created.Key)
	}
	statusBound, bodyBound := e.send(created.Secret, "GET", "/v1/tenants", "", nil)
	statusUnknown, bodyUnknown := e.send(custos.NewAPIKeySecret(), "GET", "/v1/tenants", "", nil)
	if statusBound != http.StatusUnauthorized || statusUnknown != http.StatusUnauthorized || !sameError(t, bodyBound, bodyUnknown) {
		t.Fatalf("bound key from outside: %d %s; unknown key: %d %s — want the same refusal", statusBound, bodyBound, statusUnknown, bodyUnknown)
	}

	t.Logf("refusal: %s", bodyBound)
	put := func(key, id string, networks []string, want int) []byte {
		b, _ := json.Marshal(custos.KeyNetworksRequest{Networks: networks})
		return e.do(key, "PUT", "/v1/keys/"+id+"/networks", "application/json", bytes.NewReader(b), want)
	}
	// Its principal widens it to loopback (from its unbound key): it works.
	k := decode[custos.APIKey](t, put(op, created.Key.ID, []string{"10.0.0.0/8", "127.0.0.0/8", "::1/128"}, 200))
	if len(k.Networks) != 3 {
		t.Fatalf("widened key: %+v", k)
	}
	e.get(created.Secret, "/v1/tenants", 200)
	put(op, created.Key.ID, []string{"not a range"}, 400)
}

// sameError compares two error bodies but for their request ids.
func sameError(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	delete(x, "request_id")
	delete(y, "request_id")
	return fmt.Sprint(x) == fmt.Sprint(y)
}

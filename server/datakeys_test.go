package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
)

// TestDataKeyRotationOverHTTP: a tenant admin rotates its data keys and
// starts the rewrap with the typed client; the node's leader rewraps in
// the background while the contacts stay readable, the status reaches
// "current", and every contact is still found by address. An editor may
// do none of it. (Every exchange is checked against the OpenAPI document,
// and the env's personal-data scan of leaves, logs and metrics runs at
// the end.)
func TestDataKeyRotationOverHTTP(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant
	var emails []string
	for range 30 {
		em := e.email()
		e.postJSON(f.admin, base+"/lists/"+f.list+"/contacts", map[string]any{"email": em, "attributes": map[string]string{"first_name": "Zebedee"}}, 201)
		emails = append(emails, em)
	}
	ctx := context.Background()
	admin := client.New(e.srv.URL, client.WithKey(f.admin))
	editor := client.New(e.srv.URL, client.WithKey(f.editor))
	if _, err := editor.RotateDataKeys(ctx, f.tenant); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("an editor rotated the tenant's keys: %v", err)
	}
	st, err := admin.RotateDataKeys(ctx, f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != custos.DataKeysRotated || st.Lists != 1 {
		t.Fatalf("after rotation: %+v", st)
	}
	if _, err := editor.StartRewrap(ctx, f.tenant); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("an editor started the rewrap: %v", err)
	}
	if _, err := admin.StartRewrap(ctx, f.tenant); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		// Reads go on during the rewrap.
		e.postJSON(f.admin, base+"/lists/"+f.list+"/lookup", map[string]string{"email": emails[i%len(emails)]}, 200)
		st, err = admin.DataKeys(ctx, f.tenant)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == custos.DataKeysCurrent {
			break
		}
		if i > 3000 {
			t.Fatalf("the rewrap did not finish: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.FinishedAt == nil || st.Done != int64(len(emails)) {
		t.Errorf("finished status: %+v", st)
	}
	for _, em := range emails {
		b := e.postJSON(f.admin, base+"/lists/"+f.list+"/lookup", map[string]string{"email": em}, 200)
		if c := decode[custos.Contact](t, b); !strings.EqualFold(c.Email, em) { // the domain is stored lower-cased
			t.Errorf("lookup after the rewrap: %s", fmt.Sprint(c.Token))
		}
	}
}

package client_test

import (
	"errors"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
)

func TestRepeatContact(t *testing.T) {
	f := newFixture(t)
	l, err := f.admin.CreateList(f.ctx, f.tenant, "l")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := f.admin.CreateContact(f.ctx, f.tenant, l.ID, custos.CreateContactRequest{Email: "ada@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	get := f.admin.RepeatContact(f.ctx, f.tenant, ct.Token)
	for range 3 { // the same request, sent again
		if err := get.Do(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		c     *client.Client
		token string
		code  string
	}{
		{"missing contact", f.admin, custos.NewID(custos.PrefixContact), custos.ENOTFOUND},
		{"no key", client.New(f.s.URL), ct.Token, custos.EUNAUTHORIZED},
	} {
		err := tc.c.RepeatContact(f.ctx, f.tenant, tc.token).Do()
		var ce *client.Error
		if !errors.As(err, &ce) || custos.ErrorCode(err) != tc.code {
			t.Errorf("%s: got %v, want a *client.Error with code %s", tc.name, err, tc.code)
		}
	}
	if err := client.New("http://[::1").RepeatContact(f.ctx, f.tenant, ct.Token).Do(); err == nil {
		t.Error("a malformed base URL: got no error")
	}
}

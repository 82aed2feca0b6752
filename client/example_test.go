package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
)

// Example starts a custos on 127.0.0.1, then, as a tenant admin, creates
// a list, adds contacts, reads them back page by page and looks one up;
// a missing contact comes back as the domain's not-found error.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "custos-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	s, err := startStack(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.close()
	tenant, adminKey, err := s.newTenant(ctx, "Acme", "admin@acme.test")
	if err != nil {
		fmt.Println(err)
		return
	}

	c := client.New(s.URL, client.WithKey(adminKey))
	list, err := c.CreateList(ctx, tenant.ID, "newsletter")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, email := range []string{"ada@example.test", "grace@example.test", "edsger@example.test"} {
		if _, err := c.CreateContact(ctx, tenant.ID, list.ID, custos.CreateContactRequest{Email: email, Consent: custos.ConsentSubscribed}); err != nil {
			fmt.Println(err)
			return
		}
	}
	n := 0
	for _, err := range c.Contacts(ctx, tenant.ID, list.ID) {
		if err != nil {
			fmt.Println(err)
			return
		}
		n++
	}
	fmt.Println("contacts:", n)

	found, err := c.Lookup(ctx, tenant.ID, list.ID, "grace@example.test")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("found:", found.Email, found.Consent)

	_, err = c.Contact(ctx, tenant.ID, custos.NewID(custos.PrefixContact))
	var ce *client.Error
	if errors.As(err, &ce) {
		fmt.Println("missing:", custos.ErrorCode(err), ce.Status, ce.RequestID != "")
	}
	// Output:
	// contacts: 3
	// found: grace@example.test subscribed
	// missing: not_found 404 true
}

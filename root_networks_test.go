package custos_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
)

// FuzzCheckNetworks: whatever a key request's networks hold, CheckNetworks
// refuses them with EINVALID or returns canonical ranges — idempotent,
// each one a masked prefix, bounded in number — that a key bound to them
// allows exactly the addresses inside.
func FuzzCheckNetworks(f *testing.F) {
	for _, s := range []string{"10.1.2.3/16", "::ffff:192.0.2.0/120", "2001:db8::/32 10.0.0.0/8", "0.0.0.0/0", "10.0.0.0", "fe80::1%eth0/64", "", " "} {
		f.Add(s, "10.1.2.3")
	}
	f.Fuzz(func(t *testing.T, in, source string) {
		ns, err := custos.CheckNetworks(strings.Split(in, " "))
		if err != nil {
			if custos.ErrorCode(err) != custos.EINVALID {
				t.Fatalf("CheckNetworks(%q): %v", in, err)
			}
			return
		}
		if len(ns) > custos.MaxKeyNetworks {
			t.Fatalf("%d ranges accepted", len(ns))
		}
		again, err := custos.CheckNetworks(ns)
		if err != nil || strings.Join(again, " ") != strings.Join(ns, " ") {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, ns, again, err)
		}
		if !custos.NetworksWithin(ns, ns) {
			t.Fatalf("%q not within itself", ns)
		}
		k := &custos.APIKey{Networks: ns}
		a, perr := netip.ParseAddr(source)
		inside := false
		for _, n := range ns {
			p := netip.MustParsePrefix(n)
			if p != p.Masked() {
				t.Fatalf("%q is not masked", n)
			}
			if perr == nil && p.Contains(a.Unmap().WithZone("")) {
				inside = true
			}
		}
		if len(ns) > 0 && k.AllowsSource(source) != inside {
			t.Fatalf("key bound to %q allows %q: %v, want %v", ns, source, !inside, inside)
		}
	})
}

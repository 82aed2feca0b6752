// Package loadmix generates the benign audit entries the detection
// benchmarks replay: tenant admins reading, services listing tokens and
// importing, editors updating and listing, staff viewing masked pages;
// each of 200 principals on its own tenant (of 20) and its own network,
// so that no default rule's scenario arises by accident.
package loadmix

import (
	"fmt"

	"github.com/custos-dev/custos/audit"
)

// Benign returns entry i of the mix (its Time is left to the caller).
func Benign(i int) audit.Leaf {
	who := fmt.Sprintf("pr_%03d", i%200)
	l := audit.Leaf{Actor: who, KeyID: "ak_" + who, Source: fmt.Sprintf("10.2.%d.1", i%200), Tenant: fmt.Sprintf("tn_%02d", i%20), Outcome: "ok",
		Detail: "benchmark entry of a realistic size, about three hundred bytes once the fields are filled in"}
	switch i % 10 {
	case 0, 1, 2, 3:
		l.ActorKind, l.Action, l.Tokens, l.Count = "tenant_admin", "contact.read", []string{fmt.Sprintf("ct_%026d", i)}, 1
	case 4, 5:
		l.ActorKind, l.Action, l.Count = "service", "token.list", 100
	case 6:
		l.ActorKind, l.Action, l.Count = "service", "contact.import", 5000
	case 7:
		l.ActorKind, l.Action, l.Count = "tenant_editor", "contact.update", 1
	case 8:
		l.ActorKind, l.Action, l.Count = "staff_support", "support.view", 50
	case 9:
		l.ActorKind, l.Action, l.Count = "tenant_editor", "contact.list", 100
	}
	return l
}

package addr

import (
	"strings"
)

// Shape is what an address looks like as a guess, for a detector that
// must see guessing patterns without the addresses (issue 20): never the
// address itself, only parts a caller keys before they leave the vault.
type Shape struct {
	// Class is "role" for a role mailbox (info, admin, sales …), "name"
	// for a lone common first name (john, maria …), else "other": the
	// local parts a dictionary guesser tries on domain after domain.
	Class string
	// Stem is the lower-cased local part with each run of digits made one
	// '#' ("a#" for a1, a2 …), or "" when it has no digit: numbered
	// guesses of one stem share it.
	Stem string
	// Local is the lower-cased local part, Domain the domain: one local
	// part tried across many domains shares Local.
	Local, Domain string
}

// Shapes are the classes of [Shape.Class].
const (
	ShapeRole  = "role"
	ShapeName  = "name"
	ShapeOther = "other"
)

// ShapeOf describes a normalised address (see [Normalize]).
func ShapeOf(norm string) Shape {
	at := strings.LastIndexByte(norm, '@')
	if at < 0 {
		return Shape{Class: ShapeOther}
	}
	local, domain := strings.ToLower(norm[:at]), norm[at+1:]
	s := Shape{Class: ShapeOther, Local: local, Domain: domain}
	if i := strings.LastIndexByte(local, '+'); i > 0 {
		local = local[:i] // sub-addressing: the mailbox is what is guessed
	}
	switch {
	case roleMailboxes[strings.NewReplacer("-", "", "_", "", ".", "").Replace(local)]:
		s.Class = ShapeRole
	case firstNames[local]:
		s.Class = ShapeName
	}
	var b strings.Builder
	digits := false
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteByte(c)
	}
	if strings.IndexByte(b.String(), '#') >= 0 {
		s.Stem = b.String()
	}
	return s
}

func set(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

// roleMailboxes are shared and role mailboxes, separators removed
// (no-reply and noreply are one).
var roleMailboxes = set(`info information admin administrator administration sales support contact contactus
	office hello hi hey help helpdesk hr jobs job careers career billing accounts account accounting finance
	marketing press media pr news newsletter webmaster postmaster hostmaster abuse noreply donotreply team
	service services customerservice customercare customersupport care enquiries enquiry inquiries inquiry
	mail email orders order shop store booking bookings reservations reservation reception legal privacy
	security it dev developer developers root ceo founder founders partners partner investors investor
	feedback general staff events ops operations purchasing procurement recruitment recruiting management
	manager director owner test demo hola kontakt contacto bonjour ventas vertrieb verkauf buero office1
	mailbox inbox hostmaster sysadmin tech techsupport compliance gdpr dpo editor editorial studio hallo
	welcome membership members subscribe unsubscribe list lists bounce bounces returns payments payroll
	invoice invoices ap ar treasury social community partnerships affiliates affiliate agency`)

// firstNames are common given names (and their short forms) as a whole
// local part: what a guesser tries at each domain.
var firstNames = set(`james john robert michael william david richard joseph thomas charles christopher
	daniel matthew anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy ronald
	edward jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin
	samuel gregory alexander frank patrick raymond jack dennis jerry tyler aaron jose adam nathan henry
	douglas zachary peter kyle noah ethan jeremy walter christian keith roger terry austin sean gerald carl
	harold dylan arthur lawrence jordan jesse bryan billy bruce gabriel joe logan alan juan albert willie
	elijah wayne randy vincent mason roy ralph bobby russell bradley philip eugene liam lucas oliver leo
	mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty sandra
	margaret ashley kimberly emily donna michelle carol amanda melissa deborah stephanie dorothy rebecca
	sharon laura cynthia amy kathleen angela shirley brenda emma anna pamela nicole samantha katherine
	christine helen debra rachel carolyn janet maria catherine heather diane olivia julie joyce victoria
	ruth virginia lauren kelly christina joan evelyn judith andrea hannah megan cheryl jacqueline martha
	madison teresa gloria sara janice ann kathryn abigail sophia frances jean alice judy isabella julia
	grace amber denise danielle marilyn beverly charlotte natalie theresa diana brittany doris kayla alexis
	lori marie mia ava chloe ella lucy tom mike dave chris dan matt steve jim bob bill tim jeff nick ben sam
	alex max anne kate jane tony rob greg jon josh andy ken ron ed fred pete rick tina sue liz beth jen
	kim meg jenny katie anna hans peter klaus thomas stefan andreas michael pierre jean marie luc luca
	marco giuseppe francesco carlos miguel javier pablo ana lucia sofia laura paula mohammed ahmed ali
	omar fatima wei li ming yuki hiroshi raj priya amit anil sunil rahul`)

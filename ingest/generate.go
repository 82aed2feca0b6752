package ingest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
)

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Leslie", "Margaret", "Tony", "Shafi", "Whitfield", "Hedy", "Claude"}
	lastNames  = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lamport", "Hamilton", "Hoare", "Goldwasser", "Diffie", "Lamarr", "Shannon"}
	plans      = []string{"free", "pro", "team", "enterprise"}
	consents   = []string{"subscribed", "subscribed", "unsubscribed", "unknown"}
)

// Generate writes n synthetic contacts in format "csv" or "ndjson",
// deterministically from seed. Addresses are unique within one call and
// use the reserved .test top-level domain, so they can never reach a real
// mailbox.
func Generate(w io.Writer, format string, n int, seed int64) error {
	return GenerateFrom(w, format, 0, n, seed)
}

// GenerateFrom is [Generate] of the contacts numbered from to from+n-1:
// calls over disjoint ranges write disjoint addresses, so a large data set
// can be generated and imported in chunks.
func GenerateFrom(w io.Writer, format string, from, n int, seed int64) error {
	if format != "csv" && format != "ndjson" {
		return fmt.Errorf("generate: format must be csv or ndjson")
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	bw := bufio.NewWriterSize(w, 256<<10)
	if format == "csv" {
		bw.WriteString("email,first_name,last_name,plan,consent\n")
	}
	for i := from; i < from+n; i++ {
		first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		email := fmt.Sprintf("%s.%s.%d@example-%d.test", first, last, i, rng.IntN(50))
		plan, consent := plans[rng.IntN(len(plans))], consents[rng.IntN(len(consents))]
		if format == "csv" {
			fmt.Fprintf(bw, "%s,%s,%s,%s,%s\n", email, first, last, plan, consent)
			continue
		}
		b, _ := json.Marshal(map[string]any{"email": email, "consent": consent,
			"attributes": map[string]string{"first_name": first, "last_name": last, "plan": plan}})
		bw.Write(b)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

package migrate

import (
	"strings"
	"testing"
	"testing/fstest"
)

// TestVersionsAreOneSequence: the portable and an engine's migrations are
// ordered together, and a version two files claim is refused.
func TestVersionsAreOneSequence(t *testing.T) {
	engine := Source{fstest.MapFS{"m/0001_init.sql": {}, "m/0004_outbox.sql": {}}, "m"}
	ms, err := list([]Source{Portable, engine})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, m := range ms {
		got = append(got, m.version)
	}
	// Engine-specific versions (here 1 and 4; 6 is an engine's in the real
	// sources) interleave with the portable ones, in one ascending order.
	if len(got) < 5 || got[0] != 1 || got[1] != 2 || got[3] != 4 || got[4] != 5 {
		t.Fatalf("versions %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("versions %v not ascending", got)
		}
	}
	clash := Source{fstest.MapFS{"m/0002_other.sql": {}}, "m"}
	if _, err := list([]Source{Portable, clash}); err == nil || !strings.Contains(err.Error(), "share version 2") {
		t.Fatalf("clash: %v", err)
	}
}

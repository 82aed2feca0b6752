package vault

import "testing"

// TestOthersMeter: the rewrap pauses for others' entries only. Alone, its
// own entries may be integrated late (queued mode) and in bursts: never
// "others". With others appending, each look that finds the log grown
// past the rewrap's own entries says so.
func TestOthersMeter(t *testing.T) {
	alone := othersMeter{size0: 100}
	// (size seen, own entries committed in the step): own entries show up
	// one or two steps late, then all at once.
	for i, s := range []struct {
		size uint64
		own  int
	}{{100, 2}, {101, 2}, {101, 1}, {105, 0}, {105, 3}, {108, 0}} {
		if alone.saw(s.size, s.own) {
			t.Errorf("alone, step %d (size %d): reported others", i, s.size)
		}
	}
	busy := othersMeter{size0: 100}
	if !busy.saw(110, 2) { // 2 own, 8 others
		t.Error("8 entries of others in a step: not reported")
	}
	if busy.saw(112, 2) { // only the 2 own
		t.Error("a step with only the rewrap's own entries: reported others")
	}
	if !busy.saw(115, 2) { // 2 own, 1 other
		t.Error("1 entry of others: not reported")
	}
}

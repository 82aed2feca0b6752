package sqlq

import "testing"

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		s          Style
		rows, cols int
		want       string
	}{
		{Dollar, 2, 3, "($1, $2, $3), ($4, $5, $6)"},
		{Question, 2, 3, "(?, ?, ?), (?, ?, ?)"},
		{Dollar, 1, 1, "($1)"},
	} {
		if got := tc.s.Values(tc.rows, tc.cols); got != tc.want {
			t.Errorf("%v.Values(%d, %d) = %q; want %q", tc.s, tc.rows, tc.cols, got, tc.want)
		}
		if got := tc.s.Values(tc.rows, tc.cols); got != tc.want {
			t.Errorf("cached %v.Values(%d, %d) = %q; want %q", tc.s, tc.rows, tc.cols, got, tc.want)
		}
	}
}

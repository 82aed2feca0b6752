//go:build race

package apitest

// underRace: the race detector's run (.ci/run) leaves exchanges
// unchecked. Every exchange is checked in the ordinary run; under the
// race detector kin-openapi's per-check schema work only slows the hunt
// for races, by more than the suite's timeout allows.
const underRace = true

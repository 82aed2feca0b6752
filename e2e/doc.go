// Package e2e holds tests that drive the built custos binary as separate
// processes: the crash test kills a serving custos with SIGKILL under
// load and checks that nothing acknowledged was lost and nothing changed
// unrecorded. They are slow and run when CUSTOS_SLOW=1 (as .ci/run does).
package e2e

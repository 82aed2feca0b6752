package node

// SetRotateCrash makes RotateLogKey stop as a crash would: before the
// transition statement is recorded, or after it and before the files are
// swapped.
func (n *Node) SetRotateCrash(before, after bool) {
	n.testCrashBeforeStatement, n.testCrashAfterStatement = before, after
}

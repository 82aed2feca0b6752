package server_test

import (
	"testing"

	"github.com/custos-dev/custos/internal/storetest"
)

// TestMain runs the package's tests on SQLite and, with
// CUSTOS_TEST_POSTGRES set, again on PostgreSQL.
func TestMain(m *testing.M) { storetest.Main(m) }

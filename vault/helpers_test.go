package vault_test

import (
	"os"
	"strings"

	"github.com/custos-dev/custos/ingest"
)

func readFile(path string) (string, error) {
	var all strings.Builder
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			return "", err
		}
		all.Write(b)
	}
	return all.String(), nil
}

func newCSV(s string) (*ingest.Reader, error) { return ingest.NewCSV(strings.NewReader(s)) }

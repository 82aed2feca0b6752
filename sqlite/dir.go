package sqlite

import (
	"fmt"
	"os"
	"path/filepath"
)

func ensureDir(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}

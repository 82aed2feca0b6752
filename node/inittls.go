package node

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-dev/custos/internal/tlsfiles"
)

// TLSDir is the data directory's folder for the files [InitTLS] creates.
const TLSDir = "tls"

// InitTLS creates, in the data directory's tls/ folder, a local CA
// (ca.pem, ca.key) and a server certificate for hosts signed by it
// (server.pem, server.key), and returns the "tls" section that serves
// them. It is for trying custos out: clients trust ca.pem
// (custos --ca, curl --cacert). It refuses to overwrite existing files.
func InitTLS(cfg Config, hosts []string) (TLSConfig, error) {
	dir := cfg.Path(TLSDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return TLSConfig{}, fmt.Errorf("create %s: %w", dir, err)
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	ca, err := tlsfiles.NewCA("custos local CA", 5*365*24*time.Hour)
	if err != nil {
		return TLSConfig{}, fmt.Errorf("create CA: %w", err)
	}
	leaf, err := ca.Issue("custos", hosts, 397*24*time.Hour)
	if err != nil {
		return TLSConfig{}, fmt.Errorf("issue server certificate: %w", err)
	}
	files := []struct {
		name string
		b    []byte
		mode os.FileMode
	}{{"ca.pem", ca.CertPEM, 0o644}, {"ca.key", ca.KeyPEM, 0o600}, {"server.pem", append(leaf.CertPEM, ca.CertPEM...), 0o644}, {"server.key", leaf.KeyPEM, 0o600}}
	for _, f := range files {
		fh, err := os.OpenFile(filepath.Join(dir, f.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return TLSConfig{}, fmt.Errorf("write %s: %w", f.name, err)
		}
		_, err = fh.Write(f.b)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return TLSConfig{}, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return TLSConfig{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key")}, nil
}

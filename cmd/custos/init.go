package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/custos-dev/custos/node"
)

// runInit creates a data directory: a local KEK, the log's signing key,
// the database, and the first operator with a key printed once.
func (m *Main) runInit(ctx context.Context, args []string) error {
	fs := m.flags("init", "[--data DIR]", "custos init --data ./custos-data")
	resolve := m.serverFlags(fs.FlagSet)
	email := fs.String("email", "operator@custos.local", "the installer's address: the first operator's identity")
	withTLS := fs.Bool("tls", false, "also create a local CA and a server certificate (tls/ in the data directory) and serve the API over TLS: for trying TLS out")
	tlsHosts := fs.String("tls-hosts", "localhost,127.0.0.1,::1", "with --tls: the names and addresses the server certificate is for (comma-separated)")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	if *withTLS {
		if _, err := os.Stat(cfg.Path(node.ConfigFile)); err == nil {
			return fmt.Errorf("%s is already initialised; refusing to overwrite its keys", cfg.DataDir)
		}
		if cfg.TLS, err = node.InitTLS(cfg, strings.Split(*tlsHosts, ",")); err != nil {
			return err
		}
	}
	secret, err := initDataDir(ctx, cfg, *email)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "initialised %s\n", cfg.DataDir)
	fmt.Fprintf(m.Stdout, "  key-encryption key  %s (mode 0600; keep it off the database's backups)\n", cfg.Path("kek.json"))
	fmt.Fprintf(m.Stdout, "  log signing key     %s, verifier key %s\n", cfg.Path("log.key"), cfg.Path("log.pub"))
	if v, err := node.OpenVerifier(cfg); err == nil {
		fmt.Fprintf(m.Stdout, "  for witnesses       origin %s; custos log witness-config prints what a witness operator needs\n", v.Name())
	}
	if *withTLS {
		fmt.Fprintf(m.Stdout, "  TLS                 server certificate %s, signed by the local CA %s (clients trust it with --ca)\n", cfg.TLS.CertFile, cfg.Path("tls/ca.pem"))
	}
	fmt.Fprintf(m.Stdout, "\noperator API key (shown once; store it now):\n%s\n", secret)
	return nil
}

func initDataDir(ctx context.Context, cfg Config, email string) (string, error) {
	return node.Init(ctx, cfg, email, node.Options{})
}

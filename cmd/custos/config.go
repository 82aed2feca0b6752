package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custos-dev/custos/node"
)

// Config is what a server needs (node.Config). Sources, strongest first:
// flags, environment, the data directory's custos.json, defaults
// (docs/config.md). The
// type and its validation live in package node, which builds a node from
// it; reading the sources is this command's job.
type Config = node.Config

// DefaultConfig returns the defaults: everything under ./custos-data,
// serving on loopback.
func DefaultConfig() Config { return node.DefaultConfig() }

// serverFlags registers the flags of the commands that make or serve a
// data directory (init, serve): dataFlags and the listen address and
// log origin. It returns a function that resolves the final Config after
// parsing.
func (m *Main) serverFlags(fs *flag.FlagSet) func() (Config, error) {
	return m.configFlags(fs, true)
}

// dataFlags registers the flags of the commands that open an existing
// data directory and listen on no API port (log verify, backtest, relay
// serve, …): where the data is, the database and the KEK.
func (m *Main) dataFlags(fs *flag.FlagSet) func() (Config, error) {
	return m.configFlags(fs, false)
}

// dataOnly parses the arguments of a command that takes dataFlags and
// nothing else, and resolves its Config.
func (m *Main) dataOnly(name, usage, example string, args []string) (Config, error) {
	fs := m.flags(name, usage, example)
	resolve := m.dataFlags(fs.FlagSet)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return Config{}, err
	}
	return resolve()
}

func (m *Main) configFlags(fs *flag.FlagSet, server bool) func() (Config, error) {
	cfg := DefaultConfig()
	if v := m.Getenv("CUSTOS_DATA"); v != "" {
		cfg.DataDir = v
	}
	if v := m.Getenv("CUSTOS_ADDR"); v != "" {
		cfg.Addr = v
	}
	envDB, envKEK := m.Getenv("CUSTOS_DB"), m.Getenv("CUSTOS_KEK")
	data := fs.String("data", cfg.DataDir, "data directory (env CUSTOS_DATA)")
	addr, origin := &cfg.Addr, new(string)
	if server {
		addr = fs.String("addr", cfg.Addr, "listen address (env CUSTOS_ADDR)")
		origin = fs.String("origin", "", "log origin name (init only; default "+cfg.Origin+")")
	}
	kek := fs.String("kek", "", "key-encryption key URI, overriding custos.json (env CUSTOS_KEK; e.g. hcvault://…, aws-kms://…)")
	db := fs.String("db", "", "database: postgres://… URL shared by several nodes (env CUSTOS_DB; default: SQLite in the data directory)")
	return func() (Config, error) {
		cfg.DataDir, cfg.Addr = *data, *addr
		var err error
		if cfg, err = node.ReadFileEnv(cfg, m.Getenv); err != nil {
			return cfg, err
		}
		if envDB != "" {
			cfg.DB = envDB
		}
		if *db != "" {
			cfg.DB = *db
		}
		if *origin != "" {
			cfg.Origin = *origin
		}
		if envKEK != "" {
			cfg.KEK = envKEK
		}
		if *kek != "" {
			cfg.KEK = *kek
		}
		return cfg, cfg.Validate()
	}
}

// runConfigCheck checks a custos.json before it is deployed: strictly
// (unknown keys, types, enumerations, with lines) and as the server
// would validate it at start.
func (m *Main) runConfigCheck(ctx context.Context, args []string) error {
	fs := m.flags("config check", "[-q] FILE", "custos config check /etc/custos/custos.json")
	quiet := fs.Bool("q", false, "print nothing when the file is good (the exit code says)")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	file := pos[0]
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Dir(file)
	if cfg, err = node.ParseFile(cfg, file, b, m.Getenv); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(m.Stdout, "%s: ok\n", file)
	}
	return nil
}

// runConfigShow prints the effective configuration (flags, environment,
// custos.json, defaults) with every secret redacted.
func (m *Main) runConfigShow(ctx context.Context, args []string) error {
	fs := m.flags("config show", "[--data DIR]", "custos config show --data ./custos-data")
	resolve := m.serverFlags(fs.FlagSet)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	b, err := node.Redacted(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "%s\n", b)
	return nil
}

// errHelp is returned after a command printed its flags for -h: not a
// failure, so the process exits 0.
var errHelp = errors.New("help shown")

// parse parses flags allowing them after positional arguments too
// ("custos tenant create Acme --json").
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		} else if err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

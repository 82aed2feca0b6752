package main

import (
	"errors"
	"flag"

	"github.com/custos-dev/custos/node"
)

// Config is what a server needs (node.Config). Sources, strongest first:
// flags, environment, the data directory's custos.json, defaults. The
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

func (m *Main) configFlags(fs *flag.FlagSet, server bool) func() (Config, error) {
	cfg := DefaultConfig()
	if v := m.Getenv("CUSTOS_DATA"); v != "" {
		cfg.DataDir = v
	}
	if v := m.Getenv("CUSTOS_ADDR"); v != "" {
		cfg.Addr = v
	}
	envDB := m.Getenv("CUSTOS_DB")
	data := fs.String("data", cfg.DataDir, "data directory (env CUSTOS_DATA)")
	addr, origin := &cfg.Addr, new(string)
	if server {
		addr = fs.String("addr", cfg.Addr, "listen address (env CUSTOS_ADDR)")
		origin = fs.String("origin", "", "log origin name (init only; default "+cfg.Origin+")")
	}
	kek := fs.String("kek", "", "key-encryption key URI, overriding custos.json (e.g. hcvault://…, aws-kms://…)")
	db := fs.String("db", "", "database: postgres://… URL shared by several nodes (env CUSTOS_DB; default: SQLite in the data directory)")
	return func() (Config, error) {
		cfg.DataDir, cfg.Addr = *data, *addr
		var err error
		if cfg, err = node.ReadFile(cfg); err != nil {
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
		if *kek != "" {
			cfg.KEK = *kek
		}
		return cfg, cfg.Validate()
	}
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

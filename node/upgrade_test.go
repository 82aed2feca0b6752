package node_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/migrate"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
)

// fixture is testdata/schema-0019/*/fixture.json: what the older release
// stored in the database beside it.
type fixture struct {
	SchemaVersion int      `json:"schema_version"`
	Tenant        string   `json:"tenant"`
	List          string   `json:"list"`
	AdminKey      string   `json:"admin_key"`
	Tokens        []string `json:"tokens"`
}

// TestUpgradeFromOlderRelease: a database made by custos as of migration
// 0019 (testdata/schema-0019: the binary of commit 684624a^ ran init,
// created a tenant, enrolled its admin, made a list and added 8 contacts;
// SQLite file and pg_dump) is reported as needing migration, refused by
// a start that may not migrate, upgraded by Migrate (forward only), and
// then serves: its whole log verifies — containing the checkpoint the old
// release kept — and every contact reads back as it was written. A
// database that records a migration this binary does not know is refused
// everywhere.
func TestUpgradeFromOlderRelease(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			cfg, fx := upgradeFixture(t, engine)

			st, err := node.Schema(ctx, cfg)
			if !errors.Is(err, migrate.ErrPending) || st == nil || slices.Max(st.Applied) != fx.SchemaVersion || !slices.Contains(st.Pending, 22) {
				t.Fatalf("old schema: %+v, %v; want version %d with 22 pending", st, err, fx.SchemaVersion)
			}
			if _, err := node.Open(ctx, cfg, node.Options{NoMigrate: true}); !errors.Is(err, migrate.ErrPending) {
				t.Fatalf("a start that may not migrate: %v", err)
			}
			after, err := node.Migrate(ctx, cfg)
			if err != nil || len(after.Pending) != 0 || slices.Max(after.Applied) != after.Known {
				t.Fatalf("migrate: %+v, %v", after, err)
			}
			if _, err := node.Schema(ctx, cfg); err != nil {
				t.Fatalf("after migrate: %v", err)
			}

			n, err := node.Open(ctx, cfg, node.Options{NoMigrate: true})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if err := n.Log.Integrity(); err != nil {
				t.Fatalf("upgraded log: %v", err)
			}
			trusted, err := os.ReadFile(cfg.Path(node.VerifiedFile))
			if err != nil {
				t.Fatal(err)
			}
			v, _ := node.OpenVerifier(cfg)
			if _, err := audit.Verify(ctx, n.DB.Read, v, audit.VerifyOptions{Trusted: trusted}); err != nil {
				t.Fatalf("verify the upgraded log: %v", err)
			}
			if err := n.Listen(cfg.Addr); err != nil {
				t.Fatal(err)
			}
			api := client.New(n.URL, client.WithKey(fx.AdminKey), client.WithRetries(0, 0))
			for i, tok := range fx.Tokens {
				c, err := api.Contact(ctx, fx.Tenant, tok)
				if err != nil {
					t.Fatalf("contact %s: %v", tok, err)
				}
				if want := fmt.Sprintf("person%d@example.test", i+1); c.Email != want || !strings.Contains(string(c.Attributes), fmt.Sprintf(`"P%d"`, i+1)) {
					t.Fatalf("contact %s: %s %s, want %s", tok, c.Email, c.Attributes, want)
				}
			}
			// A write after the upgrade, and the log still verifies.
			if _, err := api.CreateList(ctx, fx.Tenant, "after-upgrade"); err != nil {
				t.Fatal(err)
			}
			n.Close()
			// Verified with the node closed: on PostgreSQL audit.Verify's
			// reads are not one snapshot, and a live leader integrating
			// meanwhile can show it a tile wider than the leaves it counted.
			raw := rawDB(t, cfg)
			if _, err := audit.Verify(ctx, raw, v, audit.VerifyOptions{Trusted: trusted}); err != nil {
				t.Fatalf("verify after a write: %v", err)
			}

			// A newer custos migrated it: this one refuses to open it.
			if _, err := raw.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
				t.Fatal(err)
			}
			raw.Close()
			if _, err := node.Open(ctx, cfg, node.Options{}); !errors.Is(err, migrate.ErrNewerSchema) {
				t.Fatalf("open a newer schema: %v", err)
			}
			if _, err := node.Migrate(ctx, cfg); !errors.Is(err, migrate.ErrNewerSchema) {
				t.Fatalf("migrate a newer schema: %v", err)
			}
			if _, err := node.Schema(ctx, cfg); !errors.Is(err, migrate.ErrNewerSchema) {
				t.Fatalf("status of a newer schema: %v", err)
			}
		})
	}
}

// upgradeFixture puts testdata/schema-0019/ENGINE in place: a data
// directory with the old release's keys and, for SQLite, its database;
// for PostgreSQL its pg_dump restored into a fresh database.
func upgradeFixture(t *testing.T, engine string) (node.Config, fixture) {
	t.Helper()
	src := filepath.Join("testdata", "schema-0019", engine)
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0"
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var fx fixture
	b, err := os.ReadFile(filepath.Join(src, "fixture.json"))
	if err != nil || json.Unmarshal(b, &fx) != nil {
		t.Fatalf("fixture: %v", err)
	}
	for _, name := range []string{"kek.json", "log.key", "log.pub", node.VerifiedFile, "custos.db"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if errors.Is(err, os.ErrNotExist) && name == "custos.db" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.Path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var f node.File
	b, _ = os.ReadFile(filepath.Join(src, node.ConfigFile))
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	f.KEK, f.DB = "local://"+cfg.Path("kek.json"), ""
	if engine == "postgres" {
		base := storetest.PostgresURL(t)
		f.DB = restoreInto(t, base, "upgfix", filepath.Join(src, "custos.sql"))
	}
	b, _ = json.Marshal(f)
	if err := os.WriteFile(cfg.Path(node.ConfigFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = node.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, fx
}

func rawDB(t *testing.T, cfg node.Config) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", "file:"+cfg.DSN()+"?_pragma=busy_timeout(10000)"
	if cfg.DB != "" {
		driver, dsn = "pgx", cfg.DB
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

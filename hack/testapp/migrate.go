package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// demoMigration is applied when MIGRATIONS_DIR is unset. It is deliberately not idempotent
// (no `if not exists`): a second application would fail, so "applied once" is visible.
var demoMigration = migration{
	name: "0001_testapp_demo.sql",
	sql: `create table testapp_demo (
    id bigint generated always as identity primary key,
    note text not null,
    created_at timestamptz not null default now()
);
insert into testapp_demo (note) values ('created by testapp migrate');
`,
}

const createMigrationsTable = `create table if not exists testapp_migrations (
    name text primary key,
    applied_at timestamptz not null default now()
)`

// Serialises concurrent runs against one database (two Jobs, a retry beside a slow first try):
// the second waits, then finds every file recorded. The value is "testapp" in ASCII.
const migrationLock = 0x74657374617070

type migration struct{ name, sql string }

// loadMigrations reads dir's `*.sql` files in name order, or the demo when dir is empty.
// Entries are followed through symlinks, as a mounted ConfigMap presents its files.
func loadMigrations(dir string) ([]migration, error) {
	if dir == "" {
		return []migration{demoMigration}, nil
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if info.IsDir() {
			continue
		}
		sql, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{name: e.Name(), sql: string(sql)})
	}
	return out, nil
}

func migrate(ctx context.Context, env environment, lg *logger) int {
	if err := runMigrations(ctx, env, lg); err != nil {
		lg.Printf("migrate failed: %v", err)
		return 1
	}
	return 0
}

func runMigrations(ctx context.Context, env environment, lg *logger) error {
	raw := env["DATABASE_URL"]
	if raw == "" {
		return errNoDatabase
	}
	source := "the built-in demo"
	if dir := env["MIGRATIONS_DIR"]; dir != "" {
		source = dir
	}
	migrations, err := loadMigrations(env["MIGRATIONS_DIR"])
	if err != nil {
		return err
	}
	conn, desc, err := connectPostgres(ctx, raw)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	lg.Printf("migrate started: %d file(s) from %s; %s", len(migrations), source, desc)
	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return err
	}
	applied := 0
	for _, m := range migrations {
		done, err := applyOnce(ctx, conn, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if done {
			applied++
			lg.Printf("migrate applied %s", m.name)
		}
	}
	lg.Printf("migrate done: %d applied, %d already applied", applied, len(migrations)-applied)
	return nil
}

// applyOnce runs m and records it in one transaction, unless it is recorded already: a file
// that fails leaves neither its effects nor its record.
func applyOnce(ctx context.Context, conn *pgx.Conn, m migration) (bool, error) {
	applied := false
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var recorded bool
		err := tx.QueryRow(ctx, "select exists (select from testapp_migrations where name = $1)", m.name).
			Scan(&recorded)
		if err != nil || recorded {
			return err
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "insert into testapp_migrations (name) values ($1)", m.name); err != nil {
			return err
		}
		applied = true
		return nil
	})
	return applied && err == nil, err
}

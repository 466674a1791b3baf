package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestLoadMigrationsReadsSQLFilesInNameOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0002_b.sql", "select 2")
	write("0001_a.sql", "select 1")
	write("README.txt", "not a migration")
	if err := os.Mkdir(filepath.Join(dir, "0000_dir.sql"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A mounted ConfigMap presents each file as a symlink into a hidden data directory.
	data := filepath.Join(dir, "..data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "0003_c.sql"), []byte("select 3"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "0003_c.sql"), filepath.Join(dir, "0003_c.sql")); err != nil {
		t.Fatal(err)
	}
	got, err := loadMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []migration{{"0001_a.sql", "select 1"}, {"0002_b.sql", "select 2"}, {"0003_c.sql", "select 3"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loadMigrations = %v, want %v", got, want)
	}
}

func TestLoadMigrationsDefaultsToTheDemo(t *testing.T) {
	got, err := loadMigrations("")
	if err != nil || len(got) != 1 || got[0] != demoMigration {
		t.Fatalf("loadMigrations(\"\") = %v, %v", got, err)
	}
}

func TestLoadMigrationsFailsOnAMissingDirectory(t *testing.T) {
	if _, err := loadMigrations(filepath.Join(t.TempDir(), "absent")); !os.IsNotExist(err) {
		t.Fatalf("loadMigrations(absent) error = %v, want not-exist", err)
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// refPath is where the reference extract lives next to a checkout; the
// project builds and tests without it (tables.json is committed).
const refPath = "../../../../../../shared/reference/schema/dataverse-tables.json"

// TestTablesUpToDate regenerates tables.json from the reference and requires
// the committed copy to match it byte for byte (no hand edits, no stale copy).
func TestTablesUpToDate(t *testing.T) {
	if _, err := os.Stat(refPath); err != nil {
		t.Skipf("reference extract not present (%v); tables.json is checked by the emulator's drift test", err)
	}
	out := filepath.Join(t.TempDir(), "tables.json")
	if err := run(refPath, "../exceptions.json", out, splitList(defaultTables)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../tables.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("tables.json differs from what the generator writes: run go generate ./internal/dataverse/emulator/schema")
	}
}

func TestUnknownTableRefused(t *testing.T) {
	if _, err := os.Stat(refPath); err != nil {
		t.Skipf("reference extract not present: %v", err)
	}
	err := run(refPath, "../exceptions.json", filepath.Join(t.TempDir(), "t.json"), []string{"contact", "nosuchtable"})
	if err == nil {
		t.Fatal("a table the reference does not have was accepted")
	}
}

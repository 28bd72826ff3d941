//go:build race

package main

// raceEnabled builds the connector with the race detector when this program
// (or its test) runs with it, so the build reuses the same compiled packages.
const raceEnabled = true

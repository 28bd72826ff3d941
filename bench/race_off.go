//go:build !race

package main

// raceEnabled: see race_on.go.
const raceEnabled = false

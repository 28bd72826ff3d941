package main

import (
	"context"

	"github.com/d365portal/connector/internal/config"
)

func checkOnline(_ context.Context, e env, _ *config.Config) int { return notYet(e, "check (online)") }

func runInvite(_ context.Context, e env, args []string) int  { return pending(e, "invite", args) }
func runWebhook(_ context.Context, e env, args []string) int { return pending(e, "webhook", args) }

func pending(e env, name string, args []string) int {
	for _, c := range commands() {
		if c.name == name {
			fs := newFlags(e, name, c.usage, c.summary)
			if code, done := parse(fs, args); done && code == exitOK {
				return code
			}
		}
	}
	return notYet(e, name)
}

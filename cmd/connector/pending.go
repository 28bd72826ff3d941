package main

import "context"

func runInvite(_ context.Context, e env, args []string) int { return pending(e, "invite", args) }

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

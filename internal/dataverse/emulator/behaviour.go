package emulator

import "strings"

// Behaviour the table reference does not give, keyed by name. The names
// themselves come from the facts (schema/tables.json); addBehaviour fails
// loudly (panics at start-up) if one of them is not there.

// cascadeDelete lists lookups ("table.column") whose referencing rows are
// deleted with the row they point at (Dataverse's Cascade delete behaviour);
// every other lookup is cleared (RemoveLink).
var cascadeDelete = []string{
	"email.regardingobjectid",                                  // adx_invitation_Emails, Contact_Emails, ...
	"activityparty.activityid",                                 // an activity's parties go with it
	"sdkmessageprocessingstep.eventhandler",                    // a step goes with its service endpoint
	"sdkmessageprocessingstepimage.sdkmessageprocessingstepid", // an image goes with its step
}

// choiceDefaults are the values the platform sets on create for choices the
// request leaves out (where the emulator's callers rely on them).
var choiceDefaults = map[string]int{
	"serviceendpoint.messageformat":                2, // Json
	"serviceendpoint.userclaim":                    1, // None
	"serviceendpoint.connectionmode":               1, // Normal
	"systemuser.accessmode":                        0, // Read-Write
	"sdkmessageprocessingstep.mode":                0, // Synchronous
	"sdkmessageprocessingstep.supporteddeployment": 0, // Server Only
	"sdkmessageprocessingstep.invocationsource":    0, // Parent
	"sdkmessageprocessingstepimage.imagetype":      0, // PreImage
}

func addBehaviour(r *registry) {
	col := func(name string) *Column {
		tn, cn, _ := strings.Cut(name, ".")
		if t, ok := r.tables[tn]; ok {
			if c, ok := t.columns[cn]; ok {
				return c
			}
		}
		panic("emulator behaviour: no column " + name + " in the schema facts")
	}
	for _, n := range cascadeDelete {
		for _, l := range col(n).lookups {
			l.cascade = true
		}
	}
	for n, v := range choiceDefaults {
		col(n).Default = v
	}
	// fullname is computed by the platform from the name parts.
	col("contact.fullname")
	r.tables["contact"].computed = func(row map[string]any) { row["fullname"] = joinName(row) }
	// isauthvalueset tells whether the write-only authvalue holds a value.
	col("serviceendpoint.isauthvalueset")
	r.tables["serviceendpoint"].computed = func(row map[string]any) { row["isauthvalueset"] = row["authvalue"] != nil }
}

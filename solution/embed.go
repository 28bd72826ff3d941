// Package solution holds the source of the unmanaged Dynamics 365 solution
// that adds the "Invite to portal" command to contacts: the solution.xml and
// customizations.xml templates and the web resources. internal/solution
// renders and zips them; this package only embeds the files, since an embed
// pattern cannot reach outside its own directory.
package solution

import "embed"

// Source is solution.xml, customizations.xml (text/template files) and the
// WebResources directory, as kept in this directory.
//
//go:embed solution.xml customizations.xml WebResources
var Source embed.FS

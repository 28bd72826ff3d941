// Package solution builds the unmanaged Dynamics 365 solution an admin
// imports to get the "Invite to portal" command on contacts.
//
// The solution adds five columns to contact (invite status, portal name,
// roles, last invited on, last error), a command bar button on the contact
// form, the contact list and contact subgrids, and four web resources: the
// command library (invite.js), the dialog that picks the portal and web roles
// (dialog.html), the dialog's generated settings (config.js) and the button
// icon (icon.svg).
// The button writes status Requested, the portal and the roles through
// Xrm.WebApi; the connector picks the change up and writes the outcome back.
//
// contact is a root component with behavior 2 (only the subcomponents the
// solution lists), so importing adds the columns and the button without
// taking over the rest of the system table. customizations.xml writes it the
// way unmanaged exports write such a table: its name, its type code (2), the
// added columns without the table's own metadata, and the ribbon diff. The
// tests hold every pack to the structure Microsoft's SDK schema for solution
// files gives (CustomizationsSolution.xsd with the ribbon schemas), to the
// Open Packaging Conventions for [Content_Types].xml, and to the shape
// exports give solution.xml.
//
// Pack renders the templates embedded from the repository's solution/
// directory and writes the .zip in the layout Dataverse imports:
// [Content_Types].xml, customizations.xml, solution.xml and WebResources/.
// Every name derives from Options.Prefix (the publisher prefix), every id is
// derived from the names, and the zip entries carry a fixed time, so the same
// Options always give the same bytes.
package solution

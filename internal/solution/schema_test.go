package solution

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A structural check of the packed files against the schemas Dataverse holds
// solution files to, written with encoding/xml because Go has no XSD
// validator:
//
//   - customizations.xml against Microsoft's SDK schema for solution files,
//     CustomizationsSolution.xsd with RibbonCore.xsd, RibbonTypes.xsd and
//     RibbonWSS.xsd, as the Power Apps developer docs print them
//     ("Customization solutions file schema" and the three ribbon schema
//     pages, which point to Schemas\9.0.0.2090 of the SDK download). Only the
//     declarations of the elements this solution writes are transcribed in
//     full; their siblings are listed by name so that a misspelt or misplaced
//     element is still caught.
//   - [Content_Types].xml against the Open Packaging Conventions
//     (ECMA-376 Part 2): every part has a content type, none is declared
//     twice.
//   - solution.xml, for which no schema is published, against the shape every
//     export writes.
//
// xs:sequence is checked for order and counts, xs:all for membership and
// counts, xs:choice for membership and the number of picks; attributes for
// required ones, undeclared ones and the simple types the pages define.

const unbounded = -1

type contentKind int

const (
	emptyContent contentKind = iota // attributes only
	textContent                     // character data, checked by decl.text
	sequenceContent
	allContent
	choiceContent
	anyContent // not checked: parts of the schema this solution does not use
)

type attrDecl struct {
	name     string
	required bool
	check    func(string) error
}

type decl struct {
	name     string
	min, max int
	kind     contentKind
	attrs    []attrDecl
	kids     []*decl
	pick     [2]int             // choiceContent: how many children in all
	text     func(string) error // textContent
	// newer lists children (newerAttrs: attributes) that current exports
	// write but the 9.0.0.2090 schema does not declare. They are accepted
	// where they are listed, at most once, and nowhere else.
	newer      []string
	newerAttrs []string
	// alt is a second content model, used when the first child is the
	// first child alt declares (an xs:choice between two sequences).
	alt   *decl
	extra func(n *xnode) []string
}

func (d *decl) find(name string) *decl {
	for _, k := range d.kids {
		if k.name == name {
			return k
		}
	}
	return nil
}

func (d *decl) names() string {
	var out []string
	for _, k := range d.kids {
		out = append(out, k.name)
	}
	return strings.Join(out, ", ")
}

// Builders. Every element starts as optional and single (minOccurs=0,
// maxOccurs=1); req, many and reqMany return adjusted copies.

func empty(name string, attrs ...attrDecl) *decl {
	return &decl{name: name, max: 1, kind: emptyContent, attrs: attrs}
}

func txt(name string, check func(string) error, attrs ...attrDecl) *decl {
	return &decl{name: name, max: 1, kind: textContent, text: check, attrs: attrs}
}

func seq(name string, attrs []attrDecl, kids ...*decl) *decl {
	return &decl{name: name, max: 1, kind: sequenceContent, attrs: attrs, kids: kids}
}

func all(name string, attrs []attrDecl, kids ...*decl) *decl {
	return &decl{name: name, max: 1, kind: allContent, attrs: attrs, kids: kids}
}

func choice(name string, attrs []attrDecl, minPick, maxPick int, kids ...*decl) *decl {
	return &decl{name: name, max: 1, kind: choiceContent, attrs: attrs, kids: kids, pick: [2]int{minPick, maxPick}}
}

func anyEl(name string) *decl { return &decl{name: name, max: 1, kind: anyContent} }

func anyEls(names ...string) []*decl {
	out := make([]*decl, len(names))
	for i, n := range names {
		out[i] = anyEl(n)
	}
	return out
}

func occurs(d *decl, min, max int) *decl {
	c := *d
	c.min, c.max = min, max
	return &c
}

func req(d *decl) *decl     { return occurs(d, 1, 1) }
func many(d *decl) *decl    { return occurs(d, 0, unbounded) }
func reqMany(d *decl) *decl { return occurs(d, 1, unbounded) }

func attr(name string, check func(string) error) attrDecl {
	return attrDecl{name: name, check: check}
}

func reqAttr(name string, check func(string) error) attrDecl {
	return attrDecl{name: name, required: true, check: check}
}

func attrs(a ...attrDecl) []attrDecl { return a }

// Simple types.

func anyString(string) error { return nil }

func pattern(expr, what string) func(string) error {
	re := regexp.MustCompile(`^(?:` + expr + `)$`)
	return func(s string) error {
		if !re.MatchString(strings.TrimSpace(s)) {
			return fmt.Errorf("%q is not %s", s, what)
		}
		return nil
	}
}

func enum(values ...string) func(string) error {
	return func(s string) error {
		if !slices.Contains(values, s) {
			return fmt.Errorf("%q is not one of %s", s, strings.Join(values, ", "))
		}
		return nil
	}
}

func intAtLeast(min int64, what string) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < min {
			return fmt.Errorf("%q is not %s", s, what)
		}
		return nil
	}
}

func lengthBetween(min, max int, what string) func(string) error {
	return func(s string) error {
		if n := len([]rune(s)); n < min || n > max {
			return fmt.Errorf("%q is not %s (%d to %d characters)", s, what, min, max)
		}
		return nil
	}
}

var (
	xsInteger            = pattern(`[+-]?[0-9]+`, "an xs:integer")
	xsPositiveInteger    = intAtLeast(1, "an xs:positiveInteger")
	xsNonNegativeInteger = intAtLeast(0, "an xs:nonNegativeInteger")
	xsBoolean            = enum("true", "false", "1", "0")
	trueFalse01          = enum("0", "1")
	trueFalse            = enum("True", "False")
	guidType             = pattern(`\{?[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}\}?`, "a GuidType")
	nameType             = lengthBetween(1, 50, "an EntityAttributeNameBaseType")
	localizedNameType    = lengthBetween(1, 1<<20, "an EntityAttributeLocalizedNameBaseType")
	lengthType           = pattern(`[0-9]*[1-9][0-9]*|max|-1`, "a LengthType (positive integer, max or -1)")
	javaScriptIdentifier = pattern(`[a-zA-Z_$][a-zA-Z_$0-9.]*`, "a JavaScriptIdentifier")
	crmDataType          = enum("virtual", "primarykey", "uniqueidentifier", "char", "nchar", "varchar", "nvarchar", "ntext", "text",
		"numeric", "int", "smallint", "tinyint", "bigint", "binary", "varbinary", "image", "float", "decimal", "real", "money",
		"smallmoney", "bit", "timezone", "datetime", "smalldatetime", "timestamp", "lookup", "picklist", "multiselectpicklist",
		"partylist", "customer", "owner", "state", "status", "sql_variant", "phoneticguide", "HierarchyId", "managedproperty")
	optionSetEnumType = enum("picklist", "state", "status", "bit")
	crmParameterValue = enum("PrimaryEntityTypeCode", "PrimaryEntityTypeName", "PrimaryItemIds", "FirstPrimaryItemId",
		"PrimaryControl", "PrimaryControlId", "SelectedEntityTypeCode", "SelectedEntityTypeName", "FirstSelectedItemId",
		"SelectedControl", "SelectedControlSelectedItemCount", "SelectedControlSelectedItemIds",
		"SelectedControlSelectedItemReferences", "SelectedControlAllItemCount", "SelectedControlAllItemIds",
		"SelectedControlAllItemReferences", "SelectedControlUnselectedItemCount", "SelectedControlUnselectedItemIds",
		"SelectedControlUnselectedItemReferences", "OrgName", "OrgLcid", "UserLcid", "CommandProperties")
	privilegeType    = enum("Create", "Read", "Write", "Delete", "Assign", "Share", "Append", "AppendTo")
	privilegeDepth   = enum("None", "Basic", "Local", "Deep", "Global")
	appliesTo        = enum("PrimaryEntity", "SelectedEntity")
	appliesToPrimary = enum("PrimaryEntity")
	formState        = enum("Create", "Existing", "ReadOnly", "Disabled", "BulkEdit")
	commandTypeType  = enum("General", "OptionSelection", "IgnoredByMenu")
	modernCommand    = enum("ControlCommand", "System")
)

// customizationsSchema transcribes the declarations of
// CustomizationsSolution.xsd and the ribbon schemas for customizations.xml.
func customizationsSchema() *decl {
	// FieldXmlFieldUIType, DescriptionsType, displaynamestype.
	uiText := func(name string) *decl {
		return empty(name, attr("id", nil), reqAttr("description", anyString), reqAttr("languagecode", xsPositiveInteger))
	}
	descriptions := seq("Descriptions", nil, many(uiText("Description")))
	displaynames := seq("displaynames", nil, many(uiText("displayname")))

	// optionsettype, optionstype.
	option := seq("option",
		attrs(attr("id", guidType), reqAttr("value", xsInteger), attr("ExternalValue", anyString), attr("Color", anyString), attr("addedby", anyString)),
		req(seq("labels", nil, reqMany(uiText("label")))),
		descriptions,
		seq("Colors", nil, many(uiText("Color"))),
	)
	// IsHidden is written on every option by current exports.
	option.newerAttrs = []string{"IsHidden"}
	optionset := seq("optionset",
		attrs(reqAttr("Name", anyString), attr("localizedName", anyString), attr("description", anyString), attr("unmodified", trueFalse01)),
		txt("OptionSetType", optionSetEnumType),
		txt("IsGlobal", trueFalse01),
		txt("IntroducedVersion", anyString),
		txt("IsCustomizable", trueFalse01),
		txt("ExternalTypeName", anyString),
		displaynames,
		descriptions,
		seq("options", nil, many(option)),
		anyEl("statuses"),
		anyEl("states"),
	)

	// The attribute element of EntityInfoType: an xs:all.
	attribute := all("attribute",
		attrs(reqAttr("PhysicalName", nameType), attr("unmodified", trueFalse01)),
		txt("Type", crmDataType),
		txt("Name", nameType),
		txt("LogicalName", nameType),
		txt("ExternalName", anyString),
		txt("IsCustomField", trueFalse01),
		txt("ValidForCreateApi", trueFalse01),
		txt("ValidForReadApi", trueFalse01),
		txt("ValidForUpdateApi", trueFalse01),
		txt("DisplayMask", anyString),
		txt("Length", lengthType),
		txt("IsLogical", trueFalse01),
		txt("AttributeOf", nameType),
		txt("YomiOf", nameType),
		txt("CalculationOf", nameType),
		txt("AggregateOf", nameType),
		txt("IsAuditEnabled", trueFalse01),
		txt("XmlAbbreviation", anyString),
		txt("ImeMode", anyString),
		txt("RequiredLevel", anyString),
		txt("LinkedAttribute", anyString),
		txt("Format", anyString),
		txt("MaxLength", xsInteger),
		txt("MinValue", anyString),
		txt("MaxValue", anyString),
		txt("Accuracy", xsInteger),
		descriptions,
		displaynames,
		txt("OptionSetName", anyString),
		optionset,
		txt("AppDefaultValue", xsInteger),
		txt("AccuracySource", xsInteger),
		txt("ReferencedEntityObjectTypeCode", xsPositiveInteger),
		txt("LookupBrowse", trueFalse01),
		txt("LookupStyle", anyString),
		anyEl("LookupTypes"),
		txt("IsSecured", trueFalse01),
		txt("IsCustomizable", trueFalse01),
		txt("IsRenameable", trueFalse01),
		txt("CanModifySearchSettings", trueFalse01),
		txt("CanModifyRequirementLevelSettings", trueFalse01),
		txt("CanModifyFieldLevelSecuritySettings", trueFalse01),
		txt("CanModifyAdditionalSettings", trueFalse01),
		txt("IntroducedVersion", anyString),
		txt("SourceType", xsInteger),
		txt("FormulaDefinitionFileName", anyString),
		txt("Behavior", xsInteger),
		txt("CanChangeDateTimeBehavior", trueFalse01),
		txt("IsGlobalFilterEnabled", trueFalse01),
		txt("IsSortableEnabled", trueFalse01),
		txt("CanModifyGlobalFilterSettings", trueFalse01),
		txt("CanModifyIsSortableSettings", trueFalse01),
		txt("IsActive", trueFalse01),
		txt("IsDataSourceSecret", trueFalse01),
	)
	// Written on every column by current (2025) exports, newer than the
	// 9.0 schema.
	attribute.newer = []string{"AutoNumberFormat", "IsSearchable", "IsFilterable", "IsRetrievable", "IsLocalizable"}

	// The entity element of EntityInfoType: an xs:all in which only
	// attributes is required.
	entityKids := anyEls("EntitySetName", "ExternalName", "ExternalCollectionName", "HasRelatedNotes", "HasRelatedFeedback",
		"HasRelatedActivities", "IsConnectionsEnabled", "IsDocumentManagementEnabled", "IsCollaboration", "AutoRouteToOwnerQueue",
		"AutoCreateAccessTeams", "OwnershipTypeMask", "IsAuditEnabled", "IsActivity", "ActivityTypeMask",
		"DaysSinceRecordLastModified", "IsActivityParty", "IsReplicated", "IsReplicationUserFiltered", "IsRequiredOffline",
		"IsDuplicateCheckSupported", "IsBusinessProcessEnabled", "IsInteractionCentricEnabled", "IsMailMergeEnabled",
		"IsVisibleInMobile", "MobileClientType", "IsVisibleInMobileClient", "IsReadOnlyInMobileClient", "IsOfflineInMobileClient",
		"IsReadingPaneEnabled", "IsMapiGridEnabled", "IsCustomizable", "IsRenameable", "IsMappable", "CanModifyConnectionSettings",
		"CanModifyAuditSettings", "CanModifyMobileVisibility", "CanModifyMobileClientVisibility", "CanModifyMobileClientReadOnly",
		"CanModifyMobileClientOffline", "CanModifyDuplicateDetectionSettings", "CanModifyMailMergeSettings",
		"CanModifyQueueSettings", "CanCreateAttributes", "CanBeRelatedEntityInRelationship", "CanBePrimaryEntityInRelationship",
		"CanBeInManyToMany", "CanCreateForms", "CanCreateCharts", "CanCreateViews", "CanModifyAdditionalSettings",
		"LocalizedNames", "LocalizedCollectionNames", "Descriptions", "EntityMask", "EntityHelpUrlEnabled", "EntityHelpUrl",
		"IconLargeName", "IconMediumName", "IconSmallName", "IconVectorName", "IsQuickCreateEnabled", "IntroducedVersion",
		"EnforceStateTransitions", "CanChangeHierarchicalRelationship", "IsKnowledgeManagementEnabled", "EntityColor",
		"ChangeTrackingEnabled", "CanChangeTrackingBeEnabled", "IsOneNoteIntegrationEnabled", "IsDocumentRecommendationsEnabled",
		"IsBPFEntity", "DataProviderId", "DataSourceId", "SyncToExternalSearchIndex", "CanEnableSyncToExternalSearchIndex",
		"IsEnabledForExternalChannels", "IsSLAEnabled", "MobileOfflineFilters", "EntityKeys")
	entityKids = append(entityKids, req(seq("attributes", nil, many(attribute))))
	entity := all("entity", attrs(reqAttr("Name", nameType), attr("unmodified", trueFalse01)), entityKids...)

	ribbon := entityRibbonSchema(uiText)

	// EntitiesType: Entity is an xs:all in which only Name is required.
	entityDecl := all("Entity", nil,
		req(txt("Name", nameType, reqAttr("LocalizedName", localizedNameType), reqAttr("OriginalName", anyString))),
		txt("ObjectTypeCode", xsPositiveInteger),
		choice("EntityInfo", nil, 1, 1, entity),
		anyEl("FormXml"),
		// SavedQueriesType: an unbounded xs:choice with the default
		// minOccurs of 1, so an empty <SavedQueries /> is invalid.
		choice("SavedQueries", nil, 1, unbounded, anyEl("savedqueries")),
		anyEl("Visualizations"),
		ribbon,
		anyEl("Icons"),
		anyEl("Strings"),
		anyEl("HierarchyRules"),
		anyEl("CustomControlDefaultConfigs"),
		anyEl("indexes"),
	)
	// Validated with the SDK schema, an Entity that has none of these is
	// reported incomplete (issue 18), though the schema's printed copy makes
	// each optional; the rule is kept as the validator applies it.
	entityDecl.extra = func(n *xnode) []string {
		for _, k := range n.kids {
			if slices.Contains([]string{"ObjectTypeCode", "Visualizations", "Icons", "Strings", "HierarchyRules", "CustomControlDefaultConfigs"}, k.name) {
				return nil
			}
		}
		return []string{"has none of ObjectTypeCode, Visualizations, Icons, Strings, HierarchyRules, CustomControlDefaultConfigs; the schema requires one"}
	}

	webResource := seq("WebResource", attrs(attr("unmodified", trueFalse01)),
		req(txt("WebResourceId", guidType)),
		req(txt("Name", anyString)),
		txt("DisplayName", anyString),
		txt("Description", anyString),
		txt("SilverlightVersion", anyString),
		txt("LanguageCode", xsInteger),
		txt("WebResourceType", xsInteger),
		txt("IntroducedVersion", anyString),
		txt("IsEnabledForMobileClient", trueFalse01),
		txt("IsAvailableForMobileOffline", trueFalse01),
		txt("DependencyXml", anyString),
		txt("IsCustomizable", trueFalse01),
		txt("CanBeDeleted", trueFalse01),
		txt("IsHidden", trueFalse01),
		txt("FileName", anyString),
	)

	// The root element: an xs:sequence of optional parts, in this order.
	return seq("ImportExportXml", nil,
		seq("Entities", nil, many(entityDecl)),
		seq("Roles", nil, many(anyEl("Role"))),
		seq("Workflows", nil, many(anyEl("Workflow"))),
		seq("FieldSecurityProfiles", nil, many(anyEl("FieldSecurityProfile"))),
		seq("Templates", nil, anyEls("KBArticleTemplates", "EmailTemplates", "ContractTemplates", "MailMergeTemplates")...),
		anyEl("RibbonDiffXml"),
		anyEl("IsvConfig"),
		anyEl("RelationshipRoles"),
		anyEl("ConnectionRoles"),
		anyEl("SiteMap"),
		choice("EntityMaps", nil, 0, unbounded, anyEl("EntityMap")),
		choice("EntityRelationships", nil, 0, unbounded, anyEl("EntityRelationship")),
		seq("OrganizationSettings", nil, anyEls("general", "calendar", "email", "marketing", "customization",
			"outlookSynchronization", "autoNumbering", "sales", "externalapplications", "modulescontextsettings")...),
		seq("optionsets", nil, many(optionset)),
		anyEl("Reports"),
		anyEl("RoutingRules"),
		anyEl("ChannelPropertyGroups"),
		anyEl("ConvertRules"),
		anyEl("MobileOfflineProfiles"),
		anyEl("Slas"),
		anyEl("ChannelAccessProfiles"),
		anyEl("ChannelAccessProfileRules"),
		anyEl("Dashboards"),
		anyEl("InteractionCentricDashboards"),
		anyEl("Dialogs"),
		seq("WebResources", nil, many(webResource)),
		seq("CustomControls", nil, many(anyEl("CustomControl"))),
		anyEl("SolutionPluginAssemblies"),
		anyEl("SdkMessageProcessingSteps"),
		anyEl("ServiceEndpoints"),
		anyEl("AppModuleSiteMaps"),
		anyEl("AppModules"),
		seq("EntityDataProviders", nil, many(anyEl("EntityDataProvider"))),
		anyEl("EntityDataSources"),
		seq("Languages", nil, reqMany(txt("Language", xsNonNegativeInteger))),
		anyEl("GlobalSearchConfigurations"),
		anyEl("StoredProcedures"),
	)
}

// entityRibbonSchema is RibbonEntityDiffXmlType (RibbonCore.xsd) with the
// types it uses from RibbonTypes.xsd and RibbonWSS.xsd: a choice between the
// diff itself and a lone <RibbonNotSupported />.
func entityRibbonSchema(uiText func(string) *decl) *decl {
	std := []attrDecl{attr("Default", xsBoolean), attr("InvertResult", xsBoolean)} // StandardRuleAttributes
	withStd := func(a ...attrDecl) []attrDecl { return append(slices.Clone(std), a...) }

	params := []*decl{ // the ParameterType group
		empty("BoolParameter", reqAttr("Value", xsBoolean)),
		empty("CrmParameter", reqAttr("Value", crmParameterValue)),
		empty("DecimalParameter", reqAttr("Value", pattern(`[+-]?[0-9]*\.?[0-9]+`, "an xs:decimal"))),
		empty("IntParameter", reqAttr("Value", xsInteger)),
		empty("StringParameter", reqAttr("Value", anyString)),
	}
	function := func(name string, a ...attrDecl) *decl {
		return choice(name, append(attrs(reqAttr("FunctionName", javaScriptIdentifier), reqAttr("Library", anyString)), a...), 0, unbounded, params...)
	}

	button := empty("Button", reqAttr("Id", anyString),
		attr("Alt", anyString), attr("Command", anyString), attr("CommandType", commandTypeType), attr("CommandValueId", anyString),
		attr("Description", anyString), attr("Image32by32", anyString), attr("Image32by32Class", anyString),
		attr("Image32by32Left", xsInteger), attr("Image32by32Top", xsInteger), attr("Image16by16", anyString),
		attr("Image16by16Class", anyString), attr("Image16by16Left", xsInteger), attr("Image16by16Top", xsInteger),
		attr("LabelCss", anyString), attr("LabelText", anyString), attr("MenuItemId", anyString),
		attr("ModernCommandType", modernCommand), attr("Sequence", xsInteger), attr("Priority", xsInteger),
		attr("TemplateAlias", anyString), attr("ToolTipImage32by32", anyString), attr("ToolTipImage32by32Class", anyString),
		attr("ToolTipImage32by32Left", xsInteger), attr("ToolTipImage32by32Top", xsInteger), attr("ToolTipTitle", anyString),
		attr("ToolTipDescription", anyString), attr("ToolTipHelpKeyWord", anyString), attr("ToolTipShortcutKey", anyString),
		attr("ModernImage", anyString))
	uiDefinition := choice("CommandUIDefinition", nil, 1, 1, append([]*decl{button}, anyEls("CheckBox", "ComboBox",
		"ColorPicker", "ContextualGroup", "Controls", "DropDown", "FlyoutAnchor", "Gallery", "GalleryButton", "GroupTemplate",
		"Group", "Groups", "InsertTable", "Label", "MRUSplitButton", "MaxSize", "Menu", "MenuSection", "Scale", "Scaling",
		"Spinner", "SplitButton", "Tab", "TextBox", "ToggleButton")...)...)
	customAction := seq("CustomAction",
		attrs(attr("Id", anyString), attr("Location", anyString), attr("Sequence", xsInteger), attr("Title", anyString)),
		req(uiDefinition))

	ref := func(name string) *decl { return empty(name, reqAttr("Id", anyString)) }
	command := seq("CommandDefinition", attrs(reqAttr("Id", anyString)),
		req(seq("EnableRules", nil, many(ref("EnableRule")))),
		req(seq("DisplayRules", nil, many(ref("DisplayRule")))),
		req(choice("Actions", nil, 0, unbounded, function("JavaScriptFunction"), anyEl("Url"), anyEl("OutlookCommand"))),
	)

	displayRule := choice("DisplayRule", attrs(reqAttr("Id", anyString)), 1, unbounded, append([]*decl{
		empty("EntityPrivilegeRule", withStd(reqAttr("PrivilegeType", privilegeType), reqAttr("PrivilegeDepth", privilegeDepth),
			attr("AppliesTo", appliesTo), attr("EntityName", anyString))...),
		empty("FormStateRule", withStd(reqAttr("State", formState))...),
	}, anyEls("CrmClientTypeRule", "CommandClientTypeRule", "DeviceTypeRule", "CrmOutlookClientTypeRule",
		"CrmOutlookClientVersionRule", "CrmOfflineAccessStateRule", "EntityRule", "EntityPropertyRule",
		"FormEntityContextRule", "MiscellaneousPrivilegeRule", "OrganizationSettingRule", "OutlookRenderTypeRule",
		"OutlookVersionRule", "PageRule", "ReferencingAttributeRequiredRule", "RelationshipTypeRule", "SkuRule", "ValueRule",
		"OptionSetRule", "FormTypeRule", "HideForTabletExperienceRule", "HideIfNetBreezeNotAvailableRule",
		"HideIfServiceMetadataAvailableRule", "HideIfSharepointS2SConfigurationEnabledRule", "HideIfExportToExcelNotEnabledRule",
		"IsExportToExcelOnlineEnabledRule", "HideIfDisabledForMobileRule", "HideIfHybridSSSNotEnabledRule",
		"HideIfEmailSignatureNotEnabledRule", "HideIfReverseHybridSSSNotEnabledRule", "FeatureControlRule",
		"HideIfDelveNotAvailableRule", "HideIfTestExchangeServerNotEnabledRule", "HideIfSSSTroubleshootingNotEnabledRule",
		"HideIfCurrentUserIsNotSystemAdministratorRule", "HideIfPowerBITileNotAvailableRule", "HideIfProcessActiveRule",
		"HideIfProcessInactiveRule", "HideIfProcessUnificationIsDisabledRule",
		"HideIfO365UserDoesNotHaveExchangeSubscriptionsRule", "HideIfEmailIsApprovedByAdminRule",
		"HideIfUserIsNotTenantAdminRule", "HideIfEmailIsApprovedByAdminBasedOnESPRule",
		"HideIfProductRecommendationsNotEnabledRule", "OrRule")...)...)
	enableRule := choice("EnableRule", attrs(reqAttr("Id", anyString)), 1, unbounded, append([]*decl{
		function("CustomRule", std...),
		empty("FormStateRule", withStd(reqAttr("State", formState))...),
		empty("RecordPrivilegeRule", withStd(reqAttr("PrivilegeType", privilegeType), attr("AppliesTo", appliesToPrimary))...),
		empty("SelectionCountRule", withStd(attr("AppliesTo", appliesTo), attr("Minimum", xsInteger), attr("Maximum", xsInteger))...),
	}, anyEls("CrmClientTypeRule", "CrmOutlookClientTypeRule", "CrmOfflineAccessStateRule", "EntityRule",
		"OutlookItemTrackingRule", "OutlookVersionRule", "PageRule", "SkuRule", "ValueRule", "CommandClientTypeRule", "OrRule")...)...)

	diff := seq("RibbonDiffXml", nil,
		choice("CustomActions", nil, 0, unbounded, customAction, anyEl("HideCustomAction")),
		all("Templates", nil, req(seq("RibbonTemplates", attrs(reqAttr("Id", anyString)), many(anyEl("GroupTemplate"))))),
		seq("CommandDefinitions", nil, many(command)),
		seq("RuleDefinitions", nil, // RuleDefinitionsEntityType
			req(seq("TabDisplayRules", nil, many(anyEl("TabDisplayRule")))),
			req(seq("DisplayRules", nil, many(displayRule))),
			req(seq("EnableRules", nil, many(enableRule))),
		),
		seq("LocLabels", nil, many(seq("LocLabel", attrs(reqAttr("Id", anyString)),
			req(seq("Titles", nil, reqMany(empty("Title", reqAttr("description", anyString), reqAttr("languagecode", xsInteger)))))))),
	)
	diff.alt = seq("RibbonDiffXml", nil, req(seq("RibbonNotSupported", nil)))
	return diff
}

// solutionManifestShape is solution.xml as exports write it. No schema is
// published for it; the order and the parts every export has are taken from
// current (2025) unmanaged exports.
func solutionManifestShape() *decl {
	localized := func(name string) *decl {
		return empty(name, reqAttr("description", anyString), reqAttr("languagecode", xsPositiveInteger))
	}
	nilText := func(name string) *decl { return txt(name, anyString) }
	address := seq("Address", nil,
		req(txt("AddressNumber", xsPositiveInteger)), req(txt("AddressTypeCode", xsInteger)),
		req(nilText("City")), req(nilText("County")), req(nilText("Country")), req(nilText("Fax")),
		req(nilText("FreightTermsCode")), req(nilText("ImportSequenceNumber")), req(nilText("Latitude")),
		req(nilText("Line1")), req(nilText("Line2")), req(nilText("Line3")), req(nilText("Longitude")),
		req(nilText("Name")), req(nilText("PostalCode")), req(nilText("PostOfficeBox")), req(nilText("PrimaryContactName")),
		req(txt("ShippingMethodCode", xsInteger)), req(nilText("StateOrProvince")), req(nilText("Telephone1")),
		req(nilText("Telephone2")), req(nilText("Telephone3")), req(nilText("TimeZoneRuleVersionNumber")),
		req(nilText("UPSZone")), req(nilText("UTCOffset")), req(nilText("UTCConversionTimeZoneCode")),
	)
	rootComponent := empty("RootComponent", reqAttr("type", xsInteger), attr("schemaName", anyString), attr("id", guidType),
		attr("behavior", enum("0", "1", "2")))
	rootComponent.extra = func(n *xnode) []string {
		if n.attr("schemaName") == "" && n.attr("id") == "" {
			return []string{"names its component by neither schemaName nor id"}
		}
		return nil
	}
	return seq("ImportExportXml",
		attrs(reqAttr("version", pattern(`[0-9]+(\.[0-9]+){3}`, "a four-part version")), reqAttr("SolutionPackageVersion", anyString),
			reqAttr("languagecode", xsPositiveInteger), reqAttr("generatedBy", anyString),
			attr("OrganizationVersion", anyString), attr("OrganizationSchemaType", anyString),
			attr("CRMServerServiceabilityVersion", anyString)),
		req(seq("SolutionManifest", nil,
			req(txt("UniqueName", pattern(`[A-Za-z_][A-Za-z0-9_]*`, "a unique name"))),
			req(seq("LocalizedNames", nil, reqMany(localized("LocalizedName")))),
			seq("Descriptions", nil, many(localized("Description"))),
			req(txt("Version", pattern(`[0-9]+(\.[0-9]+){3}`, "a four-part version"))),
			req(txt("Managed", enum("0", "1", "2"))),
			req(seq("Publisher", nil,
				req(txt("UniqueName", pattern(`[A-Za-z_][A-Za-z0-9_]*`, "a unique name"))),
				req(seq("LocalizedNames", nil, reqMany(localized("LocalizedName")))),
				seq("Descriptions", nil, many(localized("Description"))),
				nilText("EMailAddress"),
				nilText("SupportingWebsiteUrl"),
				req(txt("CustomizationPrefix", pattern(`[a-z][a-z0-9]{1,7}`, "a customization prefix"))),
				req(txt("CustomizationOptionValuePrefix", intAtLeast(10000, "an option value prefix (10000 to 99999)"))),
				seq("Addresses", nil, many(address)),
			)),
			req(seq("RootComponents", nil, many(rootComponent))),
			anyEl("MissingDependencies"),
		)),
	)
}

// xnode is an element read back from a packed file.
type xnode struct {
	space, name string
	line        int
	attrs       []xml.Attr
	kids        []*xnode
	text        string
}

func (n *xnode) attr(name string) string {
	for _, a := range n.attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n *xnode) child(name string) *xnode {
	for _, k := range n.kids {
		if k.name == name {
			return k
		}
	}
	return nil
}

func readXMLTree(data []byte) (*xnode, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var root *xnode
	var stack []*xnode
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return root, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			line, _ := d.InputPos()
			n := &xnode{space: t.Name.Space, name: t.Name.Local, line: line, attrs: t.Attr}
			if len(stack) == 0 {
				root = n
			} else {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
}

const xsiNamespace = "http://www.w3.org/2001/XMLSchema-instance"

type schemaChecker struct {
	file string
	errs []string
}

func (c *schemaChecker) errorf(n *xnode, format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf("%s:%d: <%s> %s", c.file, n.line, n.name, fmt.Sprintf(format, args...)))
}

// validate checks root and everything under it against d and returns every
// violation found, each naming the file, line and element.
func validate(file string, data []byte, d *decl) []string {
	c := &schemaChecker{file: file}
	root, err := readXMLTree(data)
	switch {
	case err != nil:
		return []string{fmt.Sprintf("%s: %v", file, err)}
	case root == nil:
		return []string{file + ": no root element"}
	case root.name != d.name:
		return []string{fmt.Sprintf("%s: root element is <%s>, want <%s>", file, root.name, d.name)}
	}
	c.check(root, d)
	return c.errs
}

func (c *schemaChecker) check(n *xnode, d *decl) {
	if d.kind == anyContent {
		return
	}
	if d.alt != nil && len(n.kids) > 0 && n.kids[0].name == d.alt.kids[0].name {
		d = d.alt
	}
	c.checkAttrs(n, d)
	text := strings.TrimSpace(n.text)
	switch d.kind {
	case emptyContent:
		if len(n.kids) > 0 || text != "" {
			c.errorf(n, "has content; the schema declares it empty")
		}
	case textContent:
		if len(n.kids) > 0 {
			c.errorf(n, "holds <%s>; the schema gives it text only", n.kids[0].name)
		} else if d.text != nil {
			if err := d.text(n.text); err != nil {
				c.errorf(n, "text: %v", err)
			}
		}
	default:
		if text != "" {
			c.errorf(n, "holds text %q; the schema gives it elements only", text)
		}
		switch d.kind {
		case sequenceContent:
			c.sequence(n, d)
		case allContent:
			c.all(n, d)
		case choiceContent:
			c.choice(n, d)
		}
	}
	if d.extra != nil {
		for _, e := range d.extra(n) {
			c.errorf(n, "%s", e)
		}
	}
}

func (c *schemaChecker) checkAttrs(n *xnode, d *decl) {
	for _, a := range n.attrs {
		if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" || a.Name.Space == xsiNamespace {
			continue
		}
		i := slices.IndexFunc(d.attrs, func(ad attrDecl) bool { return ad.name == a.Name.Local })
		switch {
		case a.Name.Space != "" || i < 0 && !slices.Contains(d.newerAttrs, a.Name.Local):
			c.errorf(n, "has attribute %s, which the schema does not declare", a.Name.Local)
		case i >= 0 && d.attrs[i].check != nil:
			if err := d.attrs[i].check(a.Value); err != nil {
				c.errorf(n, "attribute %s: %v", a.Name.Local, err)
			}
		}
	}
	for _, ad := range d.attrs {
		if ad.required && !slices.ContainsFunc(n.attrs, func(a xml.Attr) bool { return a.Name.Space == "" && a.Name.Local == ad.name }) {
			c.errorf(n, "lacks the required attribute %s", ad.name)
		}
	}
}

// sequence: the children in declaration order, each as often as declared.
func (c *schemaChecker) sequence(n *xnode, d *decl) {
	pos, got := 0, 0 // the declaration being filled and how many children it has
	for _, kid := range n.kids {
		j := slices.IndexFunc(d.kids[pos:], func(k *decl) bool { return k.name == kid.name })
		switch {
		case j == 0 && (d.kids[pos].max == unbounded || got < d.kids[pos].max):
			got++
		case j > 0:
			c.lacking(n, d, pos, pos+j, got)
			pos, got = pos+j, 1
		case d.find(kid.name) != nil:
			c.errorf(kid, "is out of order or repeated in <%s> (sequence: %s)", n.name, d.names())
			continue
		default:
			c.errorf(kid, "is not declared in <%s> (sequence: %s)", n.name, d.names())
			continue
		}
		c.check(kid, d.kids[pos])
	}
	c.lacking(n, d, pos, len(d.kids), got)
}

// lacking reports the declarations from..to-1 of a sequence that hold fewer
// children than they require; the first of them holds got.
func (c *schemaChecker) lacking(n *xnode, d *decl, from, to, got int) {
	for i := from; i < to; i++ {
		have := 0
		if i == from {
			have = got
		}
		if have < d.kids[i].min {
			c.errorf(n, "lacks <%s>, which the schema requires (sequence: %s)", d.kids[i].name, d.names())
		}
	}
}

// all: any order, each declared child at most as often as declared.
func (c *schemaChecker) all(n *xnode, d *decl) {
	seen := map[string]int{}
	for _, kid := range n.kids {
		seen[kid.name]++
		k := d.find(kid.name)
		switch {
		case k == nil && slices.Contains(d.newer, kid.name):
			if seen[kid.name] > 1 {
				c.errorf(kid, "appears more than once in <%s>", n.name)
			}
		case k == nil:
			c.errorf(kid, "is not declared in <%s>", n.name)
		default:
			if k.max != unbounded && seen[kid.name] > k.max {
				c.errorf(kid, "appears more than %d time(s) in <%s>", k.max, n.name)
			}
			c.check(kid, k)
		}
	}
	for _, k := range d.kids {
		if seen[k.name] < k.min {
			c.errorf(n, "lacks <%s>, which the schema requires", k.name)
		}
	}
}

// choice: every child one of the alternatives, as many children as allowed.
func (c *schemaChecker) choice(n *xnode, d *decl) {
	for _, kid := range n.kids {
		k := d.find(kid.name)
		if k == nil {
			c.errorf(kid, "is not one of the choices of <%s> (%s)", n.name, d.names())
			continue
		}
		c.check(kid, k)
	}
	if got := len(n.kids); got < d.pick[0] {
		c.errorf(n, "holds %d children, the schema wants at least %d of %s", got, d.pick[0], d.names())
	} else if d.pick[1] != unbounded && got > d.pick[1] {
		c.errorf(n, "holds %d children, the schema allows at most %d", got, d.pick[1])
	}
}

// contentTypeProblems checks [Content_Types].xml against the zip's entries
// by the Open Packaging Conventions: the Types element in its namespace,
// Default and Override with their required attributes, part names that start
// with "/", no extension or part name given twice, every part's content type
// resolvable, and no override for a part the package lacks.
func contentTypeProblems(data []byte, entries []string) []string {
	const ns = "http://schemas.openxmlformats.org/package/2006/content-types"
	root, err := readXMLTree(data)
	if err != nil {
		return []string{"[Content_Types].xml: " + err.Error()}
	}
	var errs []string
	if root == nil || root.name != "Types" || root.space != ns {
		return []string{"[Content_Types].xml: the root is not <Types> in " + ns}
	}
	defaults := map[string]bool{}
	overrides := map[string]string{} // lower-cased part name: as written
	for _, k := range root.kids {
		switch {
		case k.space != ns:
			errs = append(errs, fmt.Sprintf("[Content_Types].xml:%d: <%s> is not in the content types namespace", k.line, k.name))
		case k.name == "Default":
			ext := strings.ToLower(k.attr("Extension"))
			if ext == "" || k.attr("ContentType") == "" {
				errs = append(errs, fmt.Sprintf("[Content_Types].xml:%d: Default lacks Extension or ContentType", k.line))
			}
			if defaults[ext] {
				errs = append(errs, fmt.Sprintf("[Content_Types].xml:%d: extension %q has two defaults", k.line, ext))
			}
			defaults[ext] = true
		case k.name == "Override":
			part := k.attr("PartName")
			if !strings.HasPrefix(part, "/") || strings.HasSuffix(part, "/") || k.attr("ContentType") == "" {
				errs = append(errs, fmt.Sprintf("[Content_Types].xml:%d: Override PartName %q or its ContentType is invalid", k.line, part))
			}
			if _, twice := overrides[strings.ToLower(part)]; twice {
				errs = append(errs, fmt.Sprintf("[Content_Types].xml:%d: part %q is overridden twice", k.line, part))
			}
			overrides[strings.ToLower(part)] = part
		default:
			errs = append(errs, fmt.Sprintf("[Content_Types].xml:%d: <%s> is neither Default nor Override", k.line, k.name))
		}
	}
	parts := map[string]bool{}
	for _, e := range entries {
		if e == "[Content_Types].xml" {
			continue // the stream itself is not a part
		}
		name := "/" + e
		parts[strings.ToLower(name)] = true
		ext := ""
		if i := strings.LastIndex(e, "."); i > strings.LastIndex(e, "/") {
			ext = strings.ToLower(e[i+1:])
		}
		if _, ok := overrides[strings.ToLower(name)]; !ok && !defaults[ext] {
			errs = append(errs, fmt.Sprintf("[Content_Types].xml: part %s has no content type", name))
		}
	}
	for lower, part := range overrides {
		if !parts[lower] {
			errs = append(errs, fmt.Sprintf("[Content_Types].xml: override for %s, which the package does not hold", part))
		}
	}
	slices.Sort(errs)
	return errs
}

// checkPacked runs every structural check over a packed solution.
func checkPacked(names []string, files map[string][]byte) []string {
	errs := validate("customizations.xml", files["customizations.xml"], customizationsSchema())
	errs = append(errs, validate("solution.xml", files["solution.xml"], solutionManifestShape())...)
	return append(errs, contentTypeProblems(files["[Content_Types].xml"], names)...)
}

func TestPackedZipFollowsSolutionSchemas(t *testing.T) {
	withPrefix := testOptions()
	withPrefix.Prefix = "acme"
	for name, o := range map[string]Options{"default": DefaultOptions(), "portals": testOptions(), "prefix": withPrefix} {
		t.Run(name, func(t *testing.T) {
			_, names, files := pack(t, o)
			for _, e := range checkPacked(names, files) {
				t.Error(e)
			}
		})
	}
}

// TestSchemaCheckCatchesViolations breaks a packed solution one rule at a
// time and expects the check to name the break, so that a pass above means
// the rules hold rather than that the check sees nothing.
func TestSchemaCheckCatchesViolations(t *testing.T) {
	_, names, files := pack(t, testOptions())
	custom := string(files["customizations.xml"])
	manifest := string(files["solution.xml"])
	types := string(files["[Content_Types].xml"])
	if errs := checkPacked(names, files); len(errs) != 0 {
		t.Fatalf("the unbroken pack fails the check: %q", errs)
	}
	replace := func(t *testing.T, s, old, new string, n int) string {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("the packed file lacks %q", old)
		}
		return strings.Replace(s, old, new, n)
	}
	entityHead := `<Name LocalizedName="Contact" OriginalName="">Contact</Name>
      <ObjectTypeCode>2</ObjectTypeCode>`
	tests := []struct {
		name      string
		file, old string
		new       string
		// everywhere replaces every occurrence of old, not only the first.
		everywhere bool
		// edit, when set, breaks the file instead of old and new.
		edit func(string) string
		want []string // substrings of the errors, all expected
	}{
		{
			name: "a ribbon the table does not support", file: "customizations.xml",
			edit: func(s string) string {
				return regexp.MustCompile(`(?s)<RibbonDiffXml>.*</RibbonDiffXml>`).ReplaceAllString(s, "<RibbonDiffXml><RibbonNotSupported /></RibbonDiffXml>")
			},
		},
		{name: "ribbon not supported beside a diff", file: "customizations.xml", old: "<RibbonDiffXml>", new: "<RibbonDiffXml><RibbonNotSupported />",
			want: []string{"<CustomActions> is not declared in <RibbonDiffXml> (sequence: RibbonNotSupported)"}},
		{
			name: "the contact section as it was before issue 18",
			file: "customizations.xml", old: entityHead + "\n      <EntityInfo>",
			new:  `<Name LocalizedName="Contact" OriginalName="Contact">Contact</Name>` + "\n      <FormXml />\n      <SavedQueries />\n      <EntityInfo>",
			want: []string{"<Entity> has none of ObjectTypeCode", "<SavedQueries> holds 0 children, the schema wants at least 1 of savedqueries"},
		},
		{name: "no type code", file: "customizations.xml", old: "\n      <ObjectTypeCode>2</ObjectTypeCode>", new: "",
			want: []string{"has none of ObjectTypeCode, Visualizations, Icons, Strings, HierarchyRules, CustomControlDefaultConfigs"}},
		{name: "type code not positive", file: "customizations.xml", old: "<ObjectTypeCode>2<", new: "<ObjectTypeCode>0<",
			want: []string{`<ObjectTypeCode> text: "0" is not an xs:positiveInteger`}},
		{name: "two type codes", file: "customizations.xml", old: "<ObjectTypeCode>2</ObjectTypeCode>", new: "<ObjectTypeCode>2</ObjectTypeCode><ObjectTypeCode>2</ObjectTypeCode>",
			want: []string{"<ObjectTypeCode> appears more than 1 time(s) in <Entity>"}},
		{name: "empty saved queries", file: "customizations.xml", old: "</EntityInfo>", new: "</EntityInfo><SavedQueries />",
			want: []string{"<SavedQueries> holds 0 children"}},
		{name: "saved queries with their child", file: "customizations.xml", old: "</EntityInfo>", new: "</EntityInfo><SavedQueries><savedqueries /></SavedQueries>"},
		{name: "entity name without OriginalName", file: "customizations.xml", old: ` OriginalName="">Contact`, new: `>Contact`,
			want: []string{"<Name> lacks the required attribute OriginalName"}},
		{name: "entity without attributes", file: "customizations.xml", old: "attributes>", new: "columns>", everywhere: true,
			want: []string{"<columns> is not declared in <entity>", "<entity> lacks <attributes>"}},
		{name: "two entities in EntityInfo", file: "customizations.xml", old: "</entity>", new: `</entity><entity Name="Contact"><attributes /></entity>`,
			want: []string{"<EntityInfo> holds 2 children, the schema allows at most 1"}},
		{name: "unknown column property", file: "customizations.xml", old: "<IsSecured>0</IsSecured>", new: "<IsSecured>0</IsSecured><IsSecret>0</IsSecret>",
			want: []string{"<IsSecret> is not declared in <attribute>"}},
		{name: "column property twice", file: "customizations.xml", old: "<IsSecured>0</IsSecured>", new: "<IsSecured>0</IsSecured><IsSecured>0</IsSecured>",
			want: []string{"<IsSecured> appears more than 1 time(s) in <attribute>"}},
		{name: "newer column property twice", file: "customizations.xml", old: "<IsSearchable>0</IsSearchable>", new: "<IsSearchable>0</IsSearchable><IsSearchable>0</IsSearchable>",
			want: []string{"<IsSearchable> appears more than once in <attribute>"}},
		{name: "flag out of range", file: "customizations.xml", old: "<IsSecured>0</IsSecured>", new: "<IsSecured>true</IsSecured>",
			want: []string{`<IsSecured> text: "true" is not one of 0, 1`}},
		{name: "unknown column type", file: "customizations.xml", old: "<Type>nvarchar</Type>", new: "<Type>string</Type>",
			want: []string{`<Type> text: "string" is not one of virtual`}},
		{name: "physical name too long", file: "customizations.xml", old: `PhysicalName="pinv_PortalName"`, new: `PhysicalName="pinv_` + strings.Repeat("x", 50) + `"`,
			want: []string{"attribute PhysicalName: ", "is not an EntityAttributeNameBaseType"}},
		{name: "option without value", file: "customizations.xml", old: `<option value="100000000"`, new: `<option`,
			want: []string{"<option> lacks the required attribute value"}},
		{name: "option set parts out of order", file: "customizations.xml", old: "<OptionSetType>picklist</OptionSetType>\n                <IntroducedVersion>1.0.0.0</IntroducedVersion>",
			new:  "<IntroducedVersion>1.0.0.0</IntroducedVersion>\n                <OptionSetType>picklist</OptionSetType>",
			want: []string{"<OptionSetType> is out of order or repeated in <optionset>"}},
		{name: "label without language", file: "customizations.xml", old: `<displayname description="Portal Name" languagecode="1033" />`, new: `<displayname description="Portal Name" />`,
			want: []string{"<displayname> lacks the required attribute languagecode"}},
		{name: "ribbon without templates", file: "customizations.xml", old: "<Templates>\n          <RibbonTemplates Id=\"Mscrm.Templates\"></RibbonTemplates>\n        </Templates>\n", new: "",
			want: nil},
		{name: "ribbon templates without id", file: "customizations.xml", old: `<RibbonTemplates Id="Mscrm.Templates">`, new: `<RibbonTemplates>`,
			want: []string{"<RibbonTemplates> lacks the required attribute Id"}},
		{name: "custom action with two controls", file: "customizations.xml", old: "</CommandUIDefinition>", new: `<Button Id="x" /></CommandUIDefinition>`,
			want: []string{"<CommandUIDefinition> holds 2 children, the schema allows at most 1"}},
		{name: "button without id", file: "customizations.xml", old: `<Button Id="pinv.contact.InviteToPortal.Form.Button"`, new: `<Button`,
			want: []string{"<Button> lacks the required attribute Id"}},
		{name: "button attribute the schema lacks", file: "customizations.xml", old: `TemplateAlias="o1"`, new: `TemplateAlias="o1" Icon="x"`,
			want: []string{"<Button> has attribute Icon, which the schema does not declare"}},
		{name: "command without display rules", file: "customizations.xml", old: "<DisplayRules>\n              <DisplayRule Id=\"pinv.contact.InviteToPortal.WriteContact.Primary.DisplayRule\" />\n            </DisplayRules>\n", new: "",
			want: []string{"<CommandDefinition> lacks <DisplayRules>"}},
		{name: "command parts out of order", file: "customizations.xml", old: "<EnableRules>\n              <EnableRule Id=\"pinv.contact.InviteToPortal.NotNewRecord.EnableRule\" />",
			new:  "<DisplayRules />\n<EnableRules>\n              <EnableRule Id=\"pinv.contact.InviteToPortal.NotNewRecord.EnableRule\" />",
			want: []string{"is out of order or repeated in <CommandDefinition>"}},
		{name: "crm parameter the schema lacks", file: "customizations.xml", old: `<CrmParameter Value="PrimaryControl" />`, new: `<CrmParameter Value="FormContext" />`,
			want: []string{`<CrmParameter> attribute Value: "FormContext" is not one of`}},
		{name: "function name with a space", file: "customizations.xml", old: `FunctionName="PortalInvite.openFromForm"`, new: `FunctionName="PortalInvite open"`,
			want: []string{"is not a JavaScriptIdentifier"}},
		{name: "privilege rule without depth", file: "customizations.xml", old: ` PrivilegeDepth="Basic" AppliesTo="PrimaryEntity"`, new: ` AppliesTo="PrimaryEntity"`,
			want: []string{"<EntityPrivilegeRule> lacks the required attribute PrivilegeDepth"}},
		{name: "record privilege on the selection", file: "customizations.xml", old: `<RecordPrivilegeRule PrivilegeType="Write" AppliesTo="PrimaryEntity" />`, new: `<RecordPrivilegeRule PrivilegeType="Write" AppliesTo="SelectedEntity" />`,
			want: []string{`<RecordPrivilegeRule> attribute AppliesTo: "SelectedEntity" is not one of PrimaryEntity`}},
		{name: "empty enable rule", file: "customizations.xml", old: "<EnableRule Id=\"pinv.contact.InviteToPortal.NotNewRecord.EnableRule\">\n              <FormStateRule State=\"Create\" InvertResult=\"true\" />\n            </EnableRule>",
			new:  `<EnableRule Id="pinv.contact.InviteToPortal.NotNewRecord.EnableRule"></EnableRule>`,
			want: []string{"<EnableRule> holds 0 children, the schema wants at least 1"}},
		{name: "rule definitions without tab display rules", file: "customizations.xml", old: "<TabDisplayRules />", new: "",
			want: []string{"<RuleDefinitions> lacks <TabDisplayRules>"}},
		{name: "loc label without titles", file: "customizations.xml", old: `<Title description="Invite to portal" languagecode="1033" />`, new: "",
			want: []string{"<Titles> lacks <Title>"}},
		{name: "web resource parts out of order", file: "customizations.xml", old: "<WebResourceId>", new: "<Name>x</Name><WebResourceId>",
			want: []string{"<WebResource> lacks <WebResourceId>", "<WebResourceId> is out of order or repeated in <WebResource>", "<Name> is out of order or repeated in <WebResource>"}},
		{name: "web resource id not a GUID", file: "customizations.xml", old: "<WebResourceId>{", new: "<WebResourceId>{x",
			want: []string{"is not a GuidType"}},
		{name: "root without option sets", file: "customizations.xml", old: "  <optionsets />\n", new: "", want: nil},
		{name: "root part after its place", file: "customizations.xml", old: "  <Languages>", new: "  <optionsets />\n  <Languages>",
			want: []string{"<optionsets> is out of order or repeated in <ImportExportXml>"}},
		{name: "no language", file: "customizations.xml", old: "<Language>1033</Language>", new: "",
			want: []string{"<Languages> lacks <Language>"}},
		{name: "text in element-only content", file: "customizations.xml", old: "<Entities>", new: "<Entities>stray",
			want: []string{`<Entities> holds text "stray"`}},
		{name: "manifest without prefix", file: "solution.xml", old: "<CustomizationPrefix>pinv</CustomizationPrefix>", new: "",
			want: []string{"<Publisher> lacks <CustomizationPrefix>"}},
		{name: "manifest without Managed", file: "solution.xml", old: "<Managed>0</Managed>", new: "",
			want: []string{"<SolutionManifest> lacks <Managed>"}},
		{name: "root component naming nothing", file: "solution.xml", old: `<RootComponent type="1" schemaName="contact" behavior="2" />`, new: `<RootComponent type="1" behavior="2" />`,
			want: []string{"<RootComponent> names its component by neither schemaName nor id"}},
		{name: "manifest version not four-part", file: "solution.xml", old: "<Version>2.1.0.0</Version>", new: "<Version>2.1</Version>",
			want: []string{`<Version> text: "2.1" is not a four-part version`}},
		{name: "web resource without content type", file: "[Content_Types].xml", old: `<Override PartName="/WebResources/pinv_portalinviteconfigjs`, new: `<Override PartName="/WebResources/other`,
			want: []string{"part /WebResources/pinv_portalinviteconfigjs", "has no content type", "override for /WebResources/other"}},
		{name: "two defaults for xml", file: "[Content_Types].xml", old: `<Default Extension="xml" ContentType="application/octet-stream" />`,
			new:  `<Default Extension="xml" ContentType="application/octet-stream" /><Default Extension="XML" ContentType="text/xml" />`,
			want: []string{`extension "xml" has two defaults`}},
		{name: "no default for xml", file: "[Content_Types].xml", old: `<Default Extension="xml" ContentType="application/octet-stream" />`, new: "",
			want: []string{"part /customizations.xml has no content type", "part /solution.xml has no content type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := map[string][]byte{"customizations.xml": []byte(custom), "solution.xml": []byte(manifest), "[Content_Types].xml": []byte(types)}
			switch {
			case tt.edit != nil:
				before := string(broken[tt.file])
				if after := tt.edit(before); after != before {
					broken[tt.file] = []byte(after)
				} else {
					t.Fatal("the edit left the file unchanged")
				}
			case tt.everywhere:
				broken[tt.file] = []byte(replace(t, string(broken[tt.file]), tt.old, tt.new, -1))
			default:
				broken[tt.file] = []byte(replace(t, string(broken[tt.file]), tt.old, tt.new, 1))
			}
			errs := checkPacked(names, broken)
			joined := strings.Join(errs, "\n")
			for _, w := range tt.want {
				if !strings.Contains(joined, w) {
					t.Errorf("errors lack %q:\n%s", w, joined)
				}
			}
			if len(tt.want) == 0 && len(errs) != 0 {
				t.Errorf("a change the schema allows was reported:\n%s", joined)
			}
		})
	}
}

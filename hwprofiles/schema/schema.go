// Package schema publishes the JSON Schema of Rackstrap hardware profiles
// (profile.schema.json), for editors and for tools that check profiles
// without Rackstrap. The profile package's strict YAML reader is the
// authority; a test keeps the two in agreement on every bundled profile.
package schema

import _ "embed"

// Profile is the JSON Schema (draft 2020-12) of a hardware profile.
//
//go:embed profile.schema.json
var Profile []byte

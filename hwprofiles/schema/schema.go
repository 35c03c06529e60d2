// Package schema publishes the JSON Schemas of Rackstrap's hardware profiles
// (profile.schema.json) and rack acceptance reports (report.schema.json), for
// editors and for tools that read them without Rackstrap. The Go readers and
// writers are the authority; tests keep the schemas in agreement with them
// (every bundled profile, every rendered report).
package schema

import _ "embed"

// Profile is the JSON Schema (draft 2020-12) of a hardware profile.
//
//go:embed profile.schema.json
var Profile []byte

// Report is the JSON Schema (draft 2020-12) of a rack acceptance report's
// JSON form.
//
//go:embed report.schema.json
var Report []byte

package spec

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of the image spec, for editors and
// CI linters. Parse enforces the same rules and more; a test keeps the two in step.
//
//go:embed schema.json
var Schema []byte

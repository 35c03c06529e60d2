package spec

import _ "embed"

// Example is a complete, commented spec; `rackstrap image lint --example` prints it.
//
//go:embed testdata/example.yaml
var Example []byte

// Package api holds the OpenAPI description of the HTTP API that
// `snapbpf serve` speaks and the `snapbpf fn` and `snapbpf load` commands
// use, and the Go types of its JSON bodies (types.go), which the service and
// the client both use. The description is the contract between the service
// and its clients: change it and the types together (the tests hold the
// types to it).
package api

import _ "embed"

// OpenAPI is api/openapi.yaml (OpenAPI 3.0), embedded so that a binary can
// serve or check it without the source tree.
//
//go:embed openapi.yaml
var OpenAPI []byte

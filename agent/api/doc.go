// Package api is the wire protocol between the shim and podvm-agent: the
// AgentService protobuf definitions and their ttrpc bindings. The generated
// files are committed; `make generate` rebuilds them from agent.proto.
package api

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative agent.proto

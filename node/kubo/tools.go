//go:build tools

// Package tools pins the Kubo version provanchor's local network builds.
package tools

import _ "github.com/ipfs/kubo/cmd/ipfs"

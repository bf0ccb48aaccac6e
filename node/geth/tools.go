//go:build tools

// Package tools pins the go-ethereum version provanchor's local network builds (`node up --chain geth`).
package tools

import _ "github.com/ethereum/go-ethereum/cmd/geth"

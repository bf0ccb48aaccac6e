//go:build tools

// Package tools pins the IPFS Cluster version provanchor's local network builds (`node up --ipfs-peers N`).
package tools

import (
	_ "github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-ctl"
	_ "github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-service"
)

module github.com/presencehq/presence/bench

go 1.26.8

require (
	github.com/coder/websocket v1.8.15
	github.com/presencehq/presence/pkg v0.0.0
)

replace github.com/presencehq/presence/pkg => ../pkg

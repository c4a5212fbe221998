// Package pkg is the root of the contracts shared by the Presence services.
//
// Each subpackage is one idea that crosses a process boundary: subject names
// (subject), stored and wire models (model), SDK events (event), the worker's
// input (connevent), token checks (token), SDK-shaped errors (apierror), the
// filter language of queryUsers and queryChannels (filter), JetStream streams
// and KV buckets (store), the embedded NATS server (natsserver),
// flag/environment configuration (config) and the token bucket that bounds
// how fast a client may connect or send (ratelimit).
package pkg

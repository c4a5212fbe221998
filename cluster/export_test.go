package cluster

// For the external tests of package cluster_test (chaos_test.go): the same
// cluster start and credentials as the smoke test's.
var StartForTest = startForTest

const (
	TestAPIKey    = smokeKey
	TestAPISecret = smokeSecret
)

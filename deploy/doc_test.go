// Package deploy holds no code: its tests check the files beside them
// (alert rules and dashboard against the metrics internal/telemetry
// registers, the Kubernetes manifests, the Dockerfile's version stamps), so
// a renamed metric or a lost setting fails go test rather than a deploy.
package deploy_test
